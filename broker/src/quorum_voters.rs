//! The `controller_quorum_voters` setting: the voters of the metadata quorum, written
//! `id@host:port,id@host:port,…`.
//!
//! Kept apart from the quorum itself so that configuration can check the list (and say
//! what is wrong with it in one line) before anything is opened or bound.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

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
        "node {node_id} is not among the voters ({listed}); a node with the controller role (process_roles) must be listed, or be broker-only"
    )]
    NotAVoter { node_id: i32, listed: String },
    #[error(
        "node {node_id} is listed at {listed}, but its internal listener is bound to {bound}: a voter must listen where the other voters reach it (internal_listen), and a node id must be used by one process only"
    )]
    ElsewhereThanListed {
        node_id: i32,
        listed: String,
        bound: SocketAddr,
    },
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

/// Checks that this node's internal listener, bound to `bound`, is where the list says
/// the other voters reach it: the same port, and the same IP when the list gives an IP
/// and the listener is bound to a particular one (not `0.0.0.0` or `::`); a host name
/// is not resolved. Else the other voters would talk to another process under this
/// node's id (a second process started with an id in use) or to nobody, while this
/// one campaigned in elections on its own. An empty list always passes.
pub fn check_own_address(
    node_id: i32,
    voters: &BTreeMap<i32, String>,
    bound: SocketAddr,
) -> Result<(), VotersError> {
    let Some(listed) = voters.get(&node_id) else {
        return Ok(());
    };
    let (host, port) = listed.rsplit_once(':').unwrap_or((listed, ""));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let same_port = port.parse::<u16>() == Ok(bound.port());
    let same_ip = match host.parse::<IpAddr>() {
        Ok(ip) => bound.ip().is_unspecified() || ip == bound.ip(),
        Err(_) => true,
    };
    if same_port && same_ip {
        Ok(())
    } else {
        Err(VotersError::ElsewhereThanListed {
            node_id,
            listed: listed.clone(),
            bound,
        })
    }
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
            "node 3 is not among the voters (1, 2); a node with the controller role (process_roles) must be listed, or be broker-only"
        );
    }

    #[test]
    fn a_voter_must_listen_where_it_is_listed() {
        let voters = parse("1@127.0.0.1:9194,2@broker-2:9294,3@[::1]:9394").unwrap();
        let at = |address: &str| address.parse::<SocketAddr>().unwrap();
        check_own_address(1, &voters, at("127.0.0.1:9194")).unwrap();
        check_own_address(1, &voters, at("0.0.0.0:9194")).unwrap();
        check_own_address(2, &voters, at("10.0.0.2:9294")).unwrap();
        check_own_address(3, &voters, at("[::1]:9394")).unwrap();
        check_own_address(7, &BTreeMap::new(), at("127.0.0.1:1")).unwrap();
        let error = check_own_address(1, &voters, at("127.0.0.1:40001")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "node 1 is listed at 127.0.0.1:9194, but its internal listener is bound to \
             127.0.0.1:40001: a voter must listen where the other voters reach it \
             (internal_listen), and a node id must be used by one process only"
        );
        assert!(check_own_address(1, &voters, at("127.0.0.2:9194")).is_err());
        assert!(check_own_address(2, &voters, at("10.0.0.2:9295")).is_err());
    }
}
