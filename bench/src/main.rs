//! `cairn-bench`: the same load generator as `cairn bench`, as its own binary so it can be built
//! and shipped without the server.

use std::process::ExitCode;

fn main() -> ExitCode {
    cairn_bench::main_with(std::env::args().skip(1).collect())
}
