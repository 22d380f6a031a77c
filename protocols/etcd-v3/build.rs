//! Compiles etcd's v3 API (.proto files written for Cairn from etcd's wire format) with protox,
//! so no protoc is needed to build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/mvccpb/kv.proto",
        "proto/authpb/auth.proto",
        "proto/etcdserverpb/rpc.proto",
        "proto/v3lockpb/v3lock.proto",
        "proto/v3electionpb/v3election.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    // The proto3 JSON mapping of every message (serde), for the HTTP/JSON gateway: etcd's
    // gateway writes the .proto field names (snake_case, or `ID`/`TTL` as declared) and reads
    // both those and lowerCamelCase; unknown fields are ignored, as etcd's gateway does.
    let descriptor_bytes = prost::Message::encode_to_vec(&fds);
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[".mvccpb", ".authpb", ".etcdserverpb", ".v3lockpb", ".v3electionpb"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
