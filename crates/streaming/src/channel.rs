//! The `channel.k8s.io` WebSocket sub-protocols of remote commands: each
//! binary message is one channel byte followed by that channel's bytes. v5
//! adds message `[255, n]`: the sender closed channel `n` (stdin's EOF).
//! The command's end is a `metav1.Status` on the error channel.

/// The protocols this side speaks, best first.
pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";
/// kubectl's WebSocket tunnel of SPDY for port-forward.
pub const PORT_FORWARD_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
/// The SPDY protocols of the remote command and port-forward upgrades.
pub const SPDY_31: &str = "SPDY/3.1";
pub const PORT_FORWARD: &str = "portforward.k8s.io";

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5: the next byte names a channel the sender closed.
pub const CLOSE: u8 = 255;

/// Picks the first protocol of `ours` the client offered in `Sec-WebSocket-Protocol`.
pub fn negotiate<'a>(offered: &str, ours: &[&'a str]) -> Option<&'a str> {
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    ours.iter().copied().find(|p| offered.contains(p))
}

/// One decoded client message.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    Data { channel: u8, data: &'a [u8] },
    Close { channel: u8 },
}

/// Splits a binary message into its channel and payload (`None` when empty).
pub fn decode(msg: &[u8]) -> Option<Message<'_>> {
    match msg {
        [] => None,
        [CLOSE, channel, ..] => Some(Message::Close { channel: *channel }),
        [channel, data @ ..] => Some(Message::Data { channel: *channel, data }),
    }
}

/// A message for `channel` carrying `data`.
pub fn encode(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    v
}

/// The error-channel Status for a command that ended with `code` (0 is Success).
pub fn exit_status(code: i32) -> serde_json::Value {
    if code == 0 {
        return serde_json::json!({"metadata": {}, "status": "Success"});
    }
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command, exit status {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The error-channel Status for a stream that failed for `message`.
pub fn failure_status(message: &str) -> serde_json::Value {
    serde_json::json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_our_order() {
        let offered = "v4.channel.k8s.io, v5.channel.k8s.io,channel.k8s.io";
        assert_eq!(negotiate(offered, &[V5, V4]), Some(V5));
        assert_eq!(negotiate("channel.k8s.io", &[V5, V4]), None);
    }

    #[test]
    fn messages_split_into_channel_and_payload() {
        assert_eq!(decode(&[0, b'h', b'i']), Some(Message::Data { channel: 0, data: b"hi" }));
        assert_eq!(decode(&[255, 0]), Some(Message::Close { channel: 0 }));
        assert_eq!(decode(&[1]), Some(Message::Data { channel: 1, data: b"" }));
        assert_eq!(decode(&[]), None);
        assert_eq!(encode(2, b"x"), vec![2, b'x']);
    }

    #[test]
    fn exit_codes_are_statuses_kubectl_understands() {
        let s = exit_status(3);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(exit_status(0)["status"], "Success");
    }
}
