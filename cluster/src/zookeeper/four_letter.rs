//! A ZooKeeper server's status through its four-letter words: the client connects to the
//! client port, sends four ASCII letters, and reads until the server closes the connection.
//! `srvr` gives the mode (leader, follower, standalone), the last zxid and the node count;
//! `conf` the ensemble's members; `envi` the version, even while the server does not serve.
//!
//! The reply maps onto keeper-wire's [`Status`], the type every status reader uses, with what
//! a four-letter word can tell (see [`status_of`]). One caveat follows from ZooKeeper itself:
//! a follower's zxid, hence its epoch, is that of the last transaction it applied, so right
//! after an election a follower reports the previous epoch until the new leader commits
//! something (every new client session is such a commit). A leader reports its new epoch at
//! once.

use crate::{ClusterError, NodeAddr, NodeId, Result};
use keeper_wire::{Role, Status, Zxid, epoch_of};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Most bytes of a reply read (`mntr`, the longest word used, is about 3 KiB).
pub const MAX_REPLY_BYTES: usize = 64 * 1024;
/// What every status word answers while the server is not part of a serving quorum.
pub const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests";

/// What `srvr` said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Srvr {
    /// Not in a quorum (looking for a leader, or still syncing).
    NotServing,
    Serving {
        mode: Mode,
        zxid: Zxid,
        znodes: u64,
        version: String,
    },
}

/// `Mode:` of a serving server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Leader,
    Follower,
    /// A one-server "ensemble": it leads itself.
    Standalone,
}

/// Sends `word` to `addr` and reads the whole reply, within `timeout`. The error is one line
/// naming the server and what went wrong.
pub async fn ask(addr: SocketAddr, word: &str, timeout: Duration) -> Result<String> {
    let fail = |why: String| ClusterError::Status(format!("ZooKeeper at {addr}, {word}: {why}"));
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                fail("connection refused (the server is down or not listening yet)".to_string())
            } else {
                fail(format!("cannot connect: {e}"))
            }
        })?;
        stream
            .write_all(word.as_bytes())
            .await
            .map_err(|e| fail(format!("cannot send: {e}")))?;
        let mut reply = Vec::new();
        (&mut stream)
            .take(MAX_REPLY_BYTES as u64 + 1)
            .read_to_end(&mut reply)
            .await
            .map_err(|e| fail(format!("reading the reply: {e}")))?;
        if reply.len() > MAX_REPLY_BYTES {
            return Err(fail(format!("reply longer than {MAX_REPLY_BYTES} bytes")));
        }
        String::from_utf8(reply).map_err(|_| fail("the reply is not text".to_string()))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(answer) => answer,
        Err(_) => Err(fail(format!("no answer within {} ms", timeout.as_millis()))),
    }
}

/// Parses a `srvr` reply; the error says what was wrong with it.
pub fn parse_srvr(reply: &str) -> Result<Srvr, String> {
    if reply.trim() == NOT_SERVING {
        return Ok(Srvr::NotServing);
    }
    let field = |name: &str| {
        reply
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .ok_or_else(|| format!("no `{name}` line in {:?}", excerpt(reply)))
    };
    let mode = match field("Mode:")? {
        "leader" => Mode::Leader,
        "follower" => Mode::Follower,
        "standalone" => Mode::Standalone,
        other => return Err(format!("unknown mode {other:?}")),
    };
    let zxid_text = field("Zxid:")?;
    let zxid = zxid_text
        .strip_prefix("0x")
        .and_then(|hex| Zxid::from_str_radix(hex, 16).ok())
        .ok_or_else(|| format!("zxid {zxid_text:?} is not 0x<hex>"))?;
    let count = field("Node count:")?;
    let znodes = count
        .parse()
        .map_err(|_| format!("node count {count:?} is not a number"))?;
    let version = field("Zookeeper version:")?.to_string();
    Ok(Srvr::Serving {
        mode,
        zxid,
        znodes,
        version,
    })
}

/// The voting members in a `conf` reply (`server.N=host:quorum:election:participant...`).
pub fn parse_voters(conf: &str) -> Vec<NodeId> {
    let mut voters: Vec<NodeId> = conf
        .lines()
        .filter_map(|l| {
            let (key, value) = l.split_once('=')?;
            let id = key.strip_prefix("server.")?.parse().ok()?;
            let participant = !value.contains(":observer");
            participant.then_some(id)
        })
        .collect();
    voters.sort_unstable();
    voters.dedup();
    voters
}

/// The status of node `id` from its `srvr` reply and its ensemble's voters (empty when
/// unknown). A four-letter word does not tell a follower who leads, nor a node its accepted
/// epoch, sessions or watches: `leader` is `None` unless the node leads, `accepted_epoch` is
/// the epoch, the counters are zero.
pub fn status_of(id: NodeId, srvr: &Srvr, voters: Vec<NodeId>) -> Status {
    let (role, leader, zxid, znodes, serving) = match srvr {
        Srvr::NotServing => (Role::Looking, None, 0, 0, false),
        Srvr::Serving {
            mode, zxid, znodes, ..
        } => match mode {
            Mode::Leader | Mode::Standalone => (Role::Leading, Some(id), *zxid, *znodes, true),
            Mode::Follower => (Role::Following, None, *zxid, *znodes, true),
        },
    };
    let voters = match srvr {
        Srvr::Serving {
            mode: Mode::Standalone,
            ..
        } => vec![id],
        _ => voters,
    };
    Status {
        id,
        role,
        epoch: epoch_of(zxid),
        accepted_epoch: epoch_of(zxid),
        leader,
        serving,
        last_zxid: zxid,
        committed_zxid: zxid,
        applied_zxid: zxid,
        synced_followers: Vec::new(),
        voters,
        election_round: 0,
        sessions: 0,
        znodes,
        watches: 0,
        bug: None,
    }
}

/// ZooKeeper's own record of its epochs, in `<dataDir>/version-2/`: `acceptedEpoch` (the
/// newest epoch it agreed to) and `currentEpoch` (the epoch it took part in establishing: a
/// follower writes it on NEWLEADER, a leader once a quorum acked its new epoch). Both are
/// written by temp file and rename, so a read sees a whole number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epochs {
    pub current: u32,
    pub accepted: u32,
}

/// Reads a node's epochs from its data directory; `None` before it wrote them (a fresh node)
/// or when they cannot be read.
pub fn read_epochs(data_dir: &std::path::Path) -> Option<Epochs> {
    let read = |name: &str| -> Option<u32> {
        let text = std::fs::read_to_string(data_dir.join("version-2").join(name)).ok()?;
        text.trim().parse().ok()
    };
    Some(Epochs {
        current: read("currentEpoch")?,
        accepted: read("acceptedEpoch")?,
    })
}

/// `status` with the node's own epochs instead of its applied zxid's, which lags: a follower's
/// applied zxid stays in the old epoch until the new leader commits something, so two nodes
/// could seem to lead one epoch. `srvr` says `leader` only once the leader's server runs (a
/// quorum acked NEWLEADER), so its `currentEpoch` is then the epoch it leads.
pub fn with_epochs(mut status: Status, epochs: Epochs) -> Status {
    status.epoch = epochs.current;
    status.accepted_epoch = epochs.accepted;
    status
}

/// [`zk_status`] with the epochs of the node's data directory where they can be read: what the
/// harness samples for the single-leader checker.
pub async fn zk_status_with_epochs(
    id: NodeId,
    zk: std::net::SocketAddr,
    data_dir: &std::path::Path,
    timeout: Duration,
) -> Result<Status> {
    let status = zk_status_at(id, zk, timeout).await?;
    Ok(match read_epochs(data_dir) {
        Some(epochs) => with_epochs(status, epochs),
        None => status,
    })
}

/// A ZooKeeper node's status (`srvr`, then `conf` for the voters while it serves), within
/// `timeout` in all. The harness's and nemesis's status readers come here through
/// [`crate::status::fetch_status`] when the node runs ZooKeeper.
pub async fn zk_status(addr: &NodeAddr, timeout: Duration) -> Result<Status> {
    zk_status_at(addr.id, addr.zk_addr(), timeout).await
}

/// [`zk_status`] of node `id` whose client port is `zk`.
pub async fn zk_status_at(
    id: NodeId,
    zk: std::net::SocketAddr,
    timeout: Duration,
) -> Result<Status> {
    let deadline = tokio::time::Instant::now() + timeout;
    let reply = ask(zk, "srvr", timeout).await?;
    let srvr = parse_srvr(&reply)
        .map_err(|why| ClusterError::Status(format!("ZooKeeper at {zk}, srvr: {why}")))?;
    let voters = match srvr {
        Srvr::Serving {
            mode: Mode::Leader | Mode::Follower,
            ..
        } => {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            // The node may stop serving between the two questions: its voters are then
            // unknown, and the srvr answer still stands.
            match ask(zk, "conf", left).await {
                Ok(conf) => parse_voters(&conf),
                Err(_) => Vec::new(),
            }
        }
        _ => Vec::new(),
    };
    Ok(status_of(id, &srvr, voters))
}

/// The server's version (`envi`'s `zookeeper.version=`, which answers also while the node
/// does not serve), e.g. `3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC` for
/// Debian's build.
pub async fn zk_version(addr: &NodeAddr, timeout: Duration) -> Result<String> {
    let zk = addr.zk_addr();
    let reply = ask(zk, "envi", timeout).await?;
    reply
        .lines()
        .find_map(|l| l.strip_prefix("zookeeper.version="))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| {
            ClusterError::Status(format!(
                "ZooKeeper at {zk}, envi: no zookeeper.version in {:?}",
                excerpt(&reply)
            ))
        })
}

/// The start of a reply, for an error message.
fn excerpt(reply: &str) -> String {
    const MAX_CHARS: usize = 80;
    reply.chars().take(MAX_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_come_from_the_data_directory_when_it_has_them() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_epochs(dir.path()), None);
        let v2 = dir.path().join("version-2");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("currentEpoch"), "6").unwrap();
        std::fs::write(v2.join("acceptedEpoch"), "7\n").unwrap();
        let epochs = read_epochs(dir.path()).unwrap();
        assert_eq!(
            epochs,
            Epochs {
                current: 6,
                accepted: 7
            }
        );
        // The applied zxid of a follower still in epoch 5 does not decide its epoch.
        let srvr = Srvr::Serving {
            mode: Mode::Follower,
            zxid: 0x5_0000_0003,
            znodes: 4,
            version: "3.8.0".into(),
        };
        let status = with_epochs(status_of(2, &srvr, vec![1, 2, 3]), epochs);
        assert_eq!((status.epoch, status.accepted_epoch), (6, 7));
        assert_eq!(status.applied_zxid, 0x5_0000_0003);
        std::fs::write(v2.join("currentEpoch"), "garbage").unwrap();
        assert_eq!(read_epochs(dir.path()), None);
    }

    const LEADER: &str =
        "Zookeeper version: 3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC
Latency min/avg/max: 0/0.0/0
Received: 2
Sent: 1
Connections: 1
Outstanding: 0
Zxid: 0x200000003
Mode: leader
Node count: 7
Proposal sizes last/min/max: -1/-1/-1
";

    const FOLLOWER: &str =
        "Zookeeper version: 3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC
Latency min/avg/max: 0/0.0/0
Received: 2
Sent: 1
Connections: 1
Outstanding: 0
Zxid: 0x100000000
Mode: follower
Node count: 5
";

    const CONF: &str = "clientPort=2181
serverId=1
electionPort=3888
membership: 
server.1=10.1.1.1:2888:3888:participant
server.2=10.1.1.2:2888:3888:participant
server.3=10.1.1.3:2888:3888:participant
version=0";

    #[test]
    fn a_leader_leads_in_the_epoch_of_its_zxid() {
        let srvr = parse_srvr(LEADER).unwrap();
        assert_eq!(
            srvr,
            Srvr::Serving {
                mode: Mode::Leader,
                zxid: 0x2_0000_0003,
                znodes: 7,
                version: "3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC".into(),
            }
        );
        let status = status_of(3, &srvr, parse_voters(CONF));
        assert!(status.is_leading() && status.serving);
        assert_eq!((status.epoch, status.accepted_epoch), (2, 2));
        assert_eq!(status.leader, Some(3));
        assert_eq!(status.last_zxid, 0x2_0000_0003);
        assert_eq!(status.committed_zxid, status.applied_zxid);
        assert_eq!(status.voters, vec![1, 2, 3]);
        assert_eq!(status.znodes, 7);
    }

    #[test]
    fn a_follower_serves_without_knowing_its_leader() {
        let status = status_of(1, &parse_srvr(FOLLOWER).unwrap(), vec![1, 2, 3]);
        assert_eq!(status.role, Role::Following);
        assert!(status.serving);
        assert_eq!((status.leader, status.epoch), (None, 1));
        assert_eq!(status.znodes, 5);
    }

    #[test]
    fn a_standalone_server_leads_itself() {
        let reply = FOLLOWER.replace("Mode: follower", "Mode: standalone");
        let status = status_of(1, &parse_srvr(&reply).unwrap(), Vec::new());
        assert!(status.is_leading() && status.serving);
        assert_eq!((status.leader, status.voters.clone()), (Some(1), vec![1]));
    }

    #[test]
    fn a_server_out_of_quorum_is_looking_and_not_serving() {
        // The reply has no newline at its end.
        let srvr = parse_srvr(NOT_SERVING).unwrap();
        assert_eq!(srvr, Srvr::NotServing);
        assert_eq!(parse_srvr(&format!("{NOT_SERVING}\n")).unwrap(), srvr);
        let status = status_of(2, &srvr, Vec::new());
        assert_eq!(status.role, Role::Looking);
        assert!(!status.serving);
        assert_eq!(status.leader, None);
    }

    #[test]
    fn garbage_and_short_replies_are_errors_that_say_why() {
        assert!(parse_srvr("").unwrap_err().contains("no `Mode:` line"));
        assert!(parse_srvr("HTTP/1.1 400 Bad Request\r\n").is_err());
        let cut = &LEADER[..LEADER.find("Mode:").unwrap()];
        assert!(parse_srvr(cut).unwrap_err().contains("Mode:"));
        let bad_zxid = LEADER.replace("0x200000003", "twelve");
        assert!(parse_srvr(&bad_zxid).unwrap_err().contains("twelve"));
        let observer = LEADER.replace("Mode: leader", "Mode: observer");
        assert!(parse_srvr(&observer).unwrap_err().contains("observer"));
        let bad_count = LEADER.replace("Node count: 7", "Node count: many");
        assert!(parse_srvr(&bad_count).is_err());
    }

    #[test]
    fn observers_are_not_voters() {
        let conf = format!("{CONF}\nserver.4=10.1.1.4:2888:3888:observer");
        assert_eq!(parse_voters(&conf), vec![1, 2, 3]);
        assert!(parse_voters(NOT_SERVING).is_empty());
    }

    #[tokio::test]
    async fn a_closed_port_is_one_clear_error() {
        // Bind and drop a listener: its port is then (almost surely) closed.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = ask(addr, "srvr", Duration::from_millis(1_000))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("connection refused"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and holds the connection without a word.
        let hold = tokio::spawn(async move { listener.accept().await });
        let err = ask(addr, "srvr", Duration::from_millis(200))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no answer within 200 ms"), "{err}");
        hold.abort();
    }

    #[tokio::test]
    async fn a_reply_is_read_to_the_end() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut word = [0u8; 4];
            s.read_exact(&mut word).await.unwrap();
            assert_eq!(&word, b"srvr");
            s.write_all(LEADER.as_bytes()).await.unwrap();
        });
        let reply = ask(addr, "srvr", Duration::from_millis(1_000))
            .await
            .unwrap();
        assert_eq!(reply, LEADER);
        server.await.unwrap();
    }
}
