//! Member and cluster ids, derived like etcd's from what the operator configured, so the same
//! configuration gives the same ids (and a restarted member keeps its id from the data dir).

/// FNV-1a: a small, stable hash; the ids need stability, not cryptographic strength.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A member's id from its peer URLs and the cluster token; never 0 (0 means "none" in etcd).
pub fn member_id_for(peer_urls: &[String], cluster_token: &str) -> u64 {
    let mut urls: Vec<&[u8]> = peer_urls.iter().map(|u| u.as_bytes()).collect();
    urls.sort();
    urls.push(cluster_token.as_bytes());
    fnv1a(&urls).max(1)
}

/// The cluster id from the initial members' ids.
pub fn cluster_id_for(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<[u8; 8]> = ids.iter().map(|i| i.to_be_bytes()).collect();
    let parts: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
    fnv1a(&parts).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_depend_on_the_token() {
        let urls = vec!["http://127.0.0.1:2380".to_string()];
        assert_eq!(member_id_for(&urls, "t"), member_id_for(&urls, "t"));
        assert_ne!(member_id_for(&urls, "t"), member_id_for(&urls, "u"));
        assert_eq!(cluster_id_for(&[3, 1, 2]), cluster_id_for(&[1, 2, 3]));
    }
}
