//! The `controller_quorum_voters` setting: the voters of the metadata quorum, written
//! `id@host:port,id@host:port,…`.
//!
//! Kept apart from the quorum itself so that configuration can check the list (and say
//! what is wrong with it in one line) before anything is opened or bound.

use std::collections::BTreeMap;

/// Why a voter list cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VotersError {
    #[error(
        "`{entry}` is not `id@host:port` (the list is `id@host:port` entries separated by commas)"
    )]
    Malformed { entry: String },
    #[error("node id {node_id} is listed twice")]
    Duplicate { node_id: i32 },
    #[error(
        "node {node_id} is not among the voters ({listed}); every node is a controller voter, so list it"
    )]
    NotAVoter { node_id: i32, listed: String },
}

/// Parses `id@host:port,…` into voter addresses by node id; an empty (or blank) text
/// is an empty map, which means "a quorum of one at this node's internal listener".
pub fn parse(text: &str) -> Result<BTreeMap<i32, String>, VotersError> {
    let mut voters = BTreeMap::new();
    if text.trim().is_empty() {
        return Ok(voters);
    }
    for entry in text.split(',') {
        let entry = entry.trim();
        let (node_id, address) = parse_entry(entry).ok_or_else(|| VotersError::Malformed {
            entry: entry.to_owned(),
        })?;
        if voters.insert(node_id, address).is_some() {
            return Err(VotersError::Duplicate { node_id });
        }
    }
    Ok(voters)
}

/// One `id@host:port`: a node id of 0 or more, a non-empty host and a port number.
fn parse_entry(entry: &str) -> Option<(i32, String)> {
    let (node_id, address) = entry.split_once('@')?;
    let node_id: i32 = node_id.trim().parse().ok().filter(|id| *id >= 0)?;
    // rsplit: an IPv6 host in brackets holds colons of its own.
    let (host, port) = address.rsplit_once(':')?;
    let host_is_valid = !host.is_empty() && !host.contains(char::is_whitespace);
    if !host_is_valid || port.parse::<u16>().is_err() {
        return None;
    }
    Some((node_id, address.to_owned()))
}

/// Checks that `node_id` is one of `voters` (an empty list always includes it).
pub fn check_member(node_id: i32, voters: &BTreeMap<i32, String>) -> Result<(), VotersError> {
    if voters.is_empty() || voters.contains_key(&node_id) {
        return Ok(());
    }
    let listed = voters
        .keys()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Err(VotersError::NotAVoter { node_id, listed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_lists_parse_by_node_id() {
        assert!(parse("").unwrap().is_empty());
        assert!(parse("  ").unwrap().is_empty());
        let voters = parse("2@127.0.0.1:9294, 1@127.0.0.1:9194,3@broker-3.local:9394").unwrap();
        let expected = BTreeMap::from([
            (1, "127.0.0.1:9194".to_owned()),
            (2, "127.0.0.1:9294".to_owned()),
            (3, "broker-3.local:9394".to_owned()),
        ]);
        assert_eq!(voters, expected);
        let ipv6 = parse("0@[::1]:9194").unwrap();
        assert_eq!(ipv6[&0], "[::1]:9194");
    }

    #[test]
    fn bad_lists_say_which_entry() {
        for (text, entry) in [
            ("1@127.0.0.1:9194,", ""),
            ("1127.0.0.1:9194", "1127.0.0.1:9194"),
            ("x@127.0.0.1:9194", "x@127.0.0.1:9194"),
            ("-1@127.0.0.1:9194", "-1@127.0.0.1:9194"),
            ("1@127.0.0.1", "1@127.0.0.1"),
            ("1@:9194", "1@:9194"),
            ("1@127.0.0.1:99999", "1@127.0.0.1:99999"),
            ("1@127.0.0.1:9194,2@", "2@"),
        ] {
            let error = parse(text).unwrap_err();
            assert_eq!(
                error,
                VotersError::Malformed {
                    entry: entry.to_owned()
                },
                "{text}"
            );
            assert!(!error.to_string().contains('\n'));
        }
        assert_eq!(
            parse("1@a:1,2@b:2,1@c:3"),
            Err(VotersError::Duplicate { node_id: 1 })
        );
    }

    #[test]
    fn this_node_must_be_a_voter() {
        let voters = parse("1@a:1,2@b:2").unwrap();
        check_member(1, &voters).unwrap();
        check_member(7, &BTreeMap::new()).unwrap();
        let error = check_member(3, &voters).unwrap_err();
        assert_eq!(
            error.to_string(),
            "node 3 is not among the voters (1, 2); every node is a controller voter, so list it"
        );
    }
}
