//! Reading nftables rules over nfnetlink, in-process: enough to tell whether
//! the masquerade rule is in place without spawning `nft` (writing it still
//! goes through `nft -f`, see [`crate::net::ensure_masquerade`]).
//!
//! One NFT_MSG_GETRULE dump of an `ip` family table's chain; the kernel
//! filters by table and chain, and the answers are filtered again here. A
//! table or chain that does not exist is an empty list.

use std::io;

use netlink_sys::protocols::NETLINK_NETFILTER;
use netlink_sys::{Socket, SocketAddr};

use crate::net::NetError;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFPROTO_IPV4: u8 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_USERDATA: u16 = 7;
const NLA_TYPE_MASK: u16 = 0x3fff;

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;

/// A rule as far as the plugin reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// NFTA_RULE_USERDATA: `nft` keeps the rule's comment there.
    pub userdata: Vec<u8>,
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(align(buf.len()), 0);
}

fn c_string(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// The GETRULE dump request for `table`'s `chain` in the `ip` family.
pub fn dump_request(table: &str, chain: &str, seq: u32) -> Vec<u8> {
    let mut body = vec![NFPROTO_IPV4, 0, 0, 0]; // nfgenmsg: family, version 0, res_id 0
    push_attr(&mut body, NFTA_RULE_TABLE, &c_string(table));
    push_attr(&mut body, NFTA_RULE_CHAIN, &c_string(chain));
    let mut msg = Vec::with_capacity(NLMSG_HDRLEN + body.len());
    msg.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE).to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&body);
    msg
}

/// The attributes (type without flags, value) of a netlink attribute stream; stops at a malformed one.
fn attributes(mut data: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([data[0], data[1]]));
        let kind = u16::from_ne_bytes([data[2], data[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > data.len() {
            break;
        }
        out.push((kind, &data[4..len]));
        data = &data[align(len).min(data.len())..];
    }
    out
}

fn c_str_eq(value: &[u8], want: &str) -> bool {
    value.split(|b| *b == 0).next() == Some(want.as_bytes())
}

/// What one datagram of the answer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More datagrams follow.
    More,
    /// The dump ended.
    Done,
    /// The kernel answered with this (positive) errno.
    Errno(i32),
}

/// Parses one datagram of the answer to [`dump_request`], collecting the rules of `table`/`chain`.
pub fn parse_answer(mut data: &[u8], seq: u32, table: &str, chain: &str, rules: &mut Vec<Rule>) -> Parsed {
    while data.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        let msg_seq = u32::from_ne_bytes([data[8], data[9], data[10], data[11]]);
        if len < NLMSG_HDRLEN || len > data.len() {
            // Truncated: nothing sensible follows.
            return Parsed::Errno(libc_eproto());
        }
        let payload = &data[NLMSG_HDRLEN..len];
        if msg_seq == seq {
            match kind {
                NLMSG_DONE => return Parsed::Done,
                NLMSG_ERROR => {
                    let code = payload.get(..4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
                    if code != 0 {
                        return Parsed::Errno(-code);
                    }
                }
                k if k == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE
                    && payload.len() >= NFGENMSG_LEN
                    && payload[0] == NFPROTO_IPV4 =>
                {
                    let attrs = attributes(&payload[NFGENMSG_LEN..]);
                    let is =
                        |want_kind: u16, want: &str| attrs.iter().any(|(k, v)| *k == want_kind && c_str_eq(v, want));
                    if is(NFTA_RULE_TABLE, table) && is(NFTA_RULE_CHAIN, chain) {
                        let userdata = attrs
                            .iter()
                            .find(|(k, _)| *k == NFTA_RULE_USERDATA)
                            .map(|(_, v)| v.to_vec())
                            .unwrap_or_default();
                        rules.push(Rule { userdata });
                    }
                }
                _ => {}
            }
        }
        data = &data[align(len).min(data.len())..];
    }
    Parsed::More
}

fn libc_eproto() -> i32 {
    nix::errno::Errno::EPROTO as i32
}

/// The rules of the `ip` family table `table`'s chain `chain`; none when either does not exist.
pub fn rules(table: &str, chain: &str) -> Result<Vec<Rule>, NetError> {
    let op = || format!("listing the rules of nftables chain ip {table} {chain}");
    let err = |source: io::Error| NetError::Netlink { ns: "host".to_string(), op: op(), source };
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(err)?;
    socket.bind_auto().map_err(err)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(err)?;
    let seq = 1;
    socket.send(&dump_request(table, chain, seq), 0).map_err(err)?;
    let mut rules = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full().map_err(err)?;
        match parse_answer(&data, seq, table, chain, &mut rules) {
            Parsed::More => {}
            Parsed::Done => return Ok(rules),
            Parsed::Errno(e) if e == nix::errno::Errno::ENOENT as i32 => return Ok(Vec::new()),
            Parsed::Errno(e) => return Err(err(io::Error::from_raw_os_error(e))),
        }
    }
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_message(seq: u32, family: u8, table: &str, chain: &str, userdata: &[u8]) -> Vec<u8> {
        let mut body = vec![family, 0, 0, 0];
        push_attr(&mut body, NFTA_RULE_TABLE, &c_string(table));
        push_attr(&mut body, NFTA_RULE_CHAIN, &c_string(chain));
        push_attr(&mut body, 3, &7u64.to_be_bytes()); // NFTA_RULE_HANDLE
        push_attr(&mut body, NFTA_RULE_USERDATA, userdata);
        let mut msg = Vec::new();
        msg.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE).to_ne_bytes());
        msg.extend_from_slice(&2u16.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&body);
        msg
    }

    fn control(kind: u16, seq: u32, code: i32) -> Vec<u8> {
        let mut msg = Vec::new();
        msg.extend_from_slice(&20u32.to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&code.to_ne_bytes());
        msg
    }

    #[test]
    fn the_request_names_table_and_chain() {
        let req = dump_request("rustkube-cni", "postrouting", 9);
        assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()) as usize, req.len());
        assert_eq!(u16::from_ne_bytes(req[4..6].try_into().unwrap()), (10 << 8) | 7);
        assert_eq!(u16::from_ne_bytes(req[6..8].try_into().unwrap()), NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(req[16], NFPROTO_IPV4);
        let attrs = attributes(&req[20..]);
        assert_eq!(attrs, vec![(NFTA_RULE_TABLE, &b"rustkube-cni\0"[..]), (NFTA_RULE_CHAIN, &b"postrouting\0"[..])]);
    }

    #[test]
    fn answers_keep_only_the_asked_chains_rules() {
        let mut data = rule_message(4, NFPROTO_IPV4, "t", "postrouting", b"\x00\x05hi!\x00");
        data.extend(rule_message(4, NFPROTO_IPV4, "t", "other", b"x"));
        data.extend(rule_message(4, 10, "t", "postrouting", b"ipv6 family"));
        data.extend(rule_message(4, NFPROTO_IPV4, "tt", "postrouting", b"other table"));
        data.extend(rule_message(3, NFPROTO_IPV4, "t", "postrouting", b"other request"));
        let mut rules = Vec::new();
        assert_eq!(parse_answer(&data, 4, "t", "postrouting", &mut rules), Parsed::More);
        assert_eq!(rules, vec![Rule { userdata: b"\x00\x05hi!\x00".to_vec() }]);
        assert!(contains(&rules[0].userdata, b"hi!"));
        assert!(!contains(&rules[0].userdata, b"ho"));
        assert_eq!(parse_answer(&control(NLMSG_DONE, 4, 0), 4, "t", "postrouting", &mut rules), Parsed::Done);
        assert_eq!(parse_answer(&control(NLMSG_ERROR, 4, -2), 4, "t", "postrouting", &mut rules), Parsed::Errno(2));
        assert_eq!(parse_answer(&data[..10], 4, "t", "postrouting", &mut rules), Parsed::More);
        assert_eq!(parse_answer(&data[..30], 4, "t", "postrouting", &mut rules), Parsed::Errno(libc_eproto()));
    }
}
