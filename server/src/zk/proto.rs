//! ZooKeeper's client protocol records (`zookeeper.jute`), op codes (`ZooDefs.OpCode`) and
//! error codes (`KeeperException.Code`), and their translation to and from keeper's core
//! requests. Only what a 3.5–3.9 client sends is decoded; anything else is `Unsupported`.

use super::jute::{JuteError, Reader, Writer};
use crate::api::{CreateMode, ErrorCode, Op, OpResult, Stat};
use crate::core::WatchKind;

/// `ZooDefs.OpCode`.
pub mod op {
    pub const NOTIFICATION: i32 = 0;
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const SET_WATCHES: i32 = 101;
    pub const SET_WATCHES2: i32 = 105;
    pub const CLOSE_SESSION: i32 = -11;
    pub const ERROR: i32 = -1;
}

/// `KeeperException.Code` values keeper answers with.
pub mod code {
    pub const OK: i32 = 0;
    pub const SYSTEM_ERROR: i32 = -1;
    pub const RUNTIME_INCONSISTENCY: i32 = -2;
    pub const UNIMPLEMENTED: i32 = -6;
    pub const BAD_ARGUMENTS: i32 = -8;
    pub const NO_NODE: i32 = -101;
    pub const BAD_VERSION: i32 = -103;
    pub const NO_CHILDREN_FOR_EPHEMERALS: i32 = -108;
    pub const NODE_EXISTS: i32 = -110;
    pub const NOT_EMPTY: i32 = -111;
    pub const SESSION_EXPIRED: i32 = -112;
    pub const INVALID_ACL: i32 = -114;
    pub const AUTH_FAILED: i32 = -115;
    pub const NO_WATCHER: i32 = -121;
}

/// Special xids (`ClientCnxn`).
pub const NOTIFICATION_XID: i32 = -1;
pub const PING_XID: i32 = -2;

/// `Watcher.Event.EventType`.
pub fn event_type(kind: crate::api::EventKind) -> i32 {
    use crate::api::EventKind::*;
    match kind {
        Created => 1,
        Deleted => 2,
        DataChanged => 3,
        ChildrenChanged => 4,
    }
}

/// `Watcher.Event.KeeperState.SyncConnected`.
pub const STATE_SYNC_CONNECTED: i32 = 3;

/// `ZooDefs.Perms.ALL`: the only ACL keeper has is `world:anyone` with every permission.
pub const PERMS_ALL: i32 = 31;

/// A keeper error code as ZooKeeper's. `None` for the codes a ZooKeeper server never answers
/// with: it closes the connection instead (not serving, outcome unknown), and the client
/// reports connection loss.
pub fn zk_code(error: ErrorCode) -> Option<i32> {
    Some(match error {
        ErrorCode::Ok => code::OK,
        ErrorCode::NoNode => code::NO_NODE,
        ErrorCode::NodeExists => code::NODE_EXISTS,
        ErrorCode::BadVersion => code::BAD_VERSION,
        ErrorCode::NotEmpty => code::NOT_EMPTY,
        ErrorCode::NoChildrenForEphemerals => code::NO_CHILDREN_FOR_EPHEMERALS,
        ErrorCode::SessionExpired => code::SESSION_EXPIRED,
        ErrorCode::BadArguments => code::BAD_ARGUMENTS,
        ErrorCode::RuntimeInconsistency => code::RUNTIME_INCONSISTENCY,
        ErrorCode::NoWatcher => code::NO_WATCHER,
        ErrorCode::Internal => code::SYSTEM_ERROR,
        ErrorCode::NotReady | ErrorCode::Timeout | ErrorCode::ConnectionLoss => return None,
    })
}

/// `ConnectRequest`, plus the `readOnly` byte 3.4+ clients append.
#[derive(Debug, PartialEq, Eq)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub password: Vec<u8>,
    /// `None` for an old client that did not send the byte (it must not get one back).
    pub read_only: Option<bool>,
}

impl ConnectRequest {
    pub fn decode(r: &mut Reader) -> Result<ConnectRequest, JuteError> {
        Ok(ConnectRequest {
            protocol_version: r.int()?,
            last_zxid_seen: r.long()?,
            timeout_ms: r.int()?,
            session_id: r.long()?,
            password: r.buffer()?,
            read_only: if r.remaining() > 0 {
                Some(r.bool()?)
            } else {
                None
            },
        })
    }
}

/// `ConnectResponse`: timeout 0 and session 0 mean "expired" to the client.
pub fn connect_response(
    timeout_ms: i32,
    session: i64,
    password: &[u8],
    read_only: bool,
) -> Vec<u8> {
    let mut w = Writer::frame();
    w.int(0).int(timeout_ms).long(session).buffer(password);
    if read_only {
        w.bool(false);
    }
    w.finish()
}

/// A read inside a request or a multiRead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOp {
    Exists {
        path: String,
        watch: bool,
    },
    GetData {
        path: String,
        watch: bool,
    },
    /// `with_stat`: getChildren2.
    GetChildren {
        path: String,
        watch: bool,
        with_stat: bool,
    },
}

/// One decoded client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Ping,
    CloseSession,
    /// A single write; `reply_stat` is create2/createContainer (the reply carries the Stat).
    Write {
        op: Op,
        reply_stat: bool,
    },
    Read(ReadOp),
    Sync {
        path: String,
    },
    Multi {
        ops: Vec<(i32, Op)>,
    },
    MultiRead {
        ops: Vec<ReadOp>,
    },
    AllChildrenNumber {
        path: String,
    },
    SetWatches {
        relative_zxid: i64,
        data: Vec<String>,
        exist: Vec<String>,
        child: Vec<String>,
    },
    RemoveWatches {
        path: String,
        kind: WatchKind,
        check_only: bool,
    },
    GetAcl {
        path: String,
    },
    SetAcl {
        path: String,
        version: i32,
    },
    /// Answered with this ZooKeeper error code and nothing else.
    Refuse(i32),
}

/// The `RequestHeader` and the request after it.
#[derive(Debug)]
pub struct Framed {
    pub xid: i32,
    pub op: i32,
    pub request: Request,
}

/// Decodes one request frame (without its length prefix).
pub fn decode_request(frame: &[u8]) -> Result<Framed, JuteError> {
    let mut r = Reader::new(frame);
    let xid = r.int()?;
    let op = r.int()?;
    let request = decode_body(op, &mut r)?;
    Ok(Framed { xid, op, request })
}

fn decode_body(op_code: i32, r: &mut Reader) -> Result<Request, JuteError> {
    Ok(match op_code {
        op::PING => Request::Ping,
        op::CLOSE_SESSION => Request::CloseSession,
        op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
            match decode_create(op_code, r)? {
                Ok(op) => Request::Write {
                    op,
                    reply_stat: op_code != op::CREATE,
                },
                Err(code) => Request::Refuse(code),
            }
        }
        op::DELETE => Request::Write {
            op: Op::Delete {
                path: r.string()?,
                version: r.int()?,
            },
            reply_stat: false,
        },
        op::SET_DATA => match decode_set_data(r)? {
            Ok(op) => Request::Write {
                op,
                reply_stat: true,
            },
            Err(code) => Request::Refuse(code),
        },
        op::EXISTS | op::GET_DATA | op::GET_CHILDREN | op::GET_CHILDREN2 => {
            Request::Read(decode_read(op_code, r)?)
        }
        op::SYNC => Request::Sync { path: r.string()? },
        op::MULTI => decode_multi(r)?,
        op::MULTI_READ => {
            let mut ops = Vec::new();
            loop {
                let (code, done, _err) = (r.int()?, r.bool()?, r.int()?);
                if done {
                    break;
                }
                match code {
                    op::GET_DATA | op::GET_CHILDREN => ops.push(decode_read(code, r)?),
                    _ => return Ok(Request::Refuse(code::BAD_ARGUMENTS)),
                }
            }
            Request::MultiRead { ops }
        }
        op::CHECK_WATCHES | op::REMOVE_WATCHES => {
            let path = r.string()?;
            let kind = match r.int()? {
                1 => WatchKind::Child,
                2 => WatchKind::Data,
                3 => WatchKind::Any,
                _ => return Ok(Request::Refuse(code::BAD_ARGUMENTS)),
            };
            Request::RemoveWatches {
                path,
                kind,
                check_only: op_code == op::CHECK_WATCHES,
            }
        }
        op::GET_ALL_CHILDREN_NUMBER => Request::AllChildrenNumber { path: r.string()? },
        op::SET_WATCHES | op::SET_WATCHES2 => {
            let relative_zxid = r.long()?;
            let data = r.vector(|r| r.string())?;
            let exist = r.vector(|r| r.string())?;
            let child = r.vector(|r| r.string())?;
            if op_code == op::SET_WATCHES2 {
                let persistent = r.vector(|r| r.string())?;
                let recursive = r.vector(|r| r.string())?;
                // Persistent watches (addWatch) are not implemented, so a client never has
                // any to set again.
                if !persistent.is_empty() || !recursive.is_empty() {
                    return Ok(Request::Refuse(code::UNIMPLEMENTED));
                }
            }
            Request::SetWatches {
                relative_zxid,
                data,
                exist,
                child,
            }
        }
        op::GET_ACL => Request::GetAcl { path: r.string()? },
        op::SET_ACL => {
            let path = r.string()?;
            let open = acl_is_open(r)?;
            let version = r.int()?;
            if open {
                Request::SetAcl { path, version }
            } else {
                Request::Refuse(code::INVALID_ACL)
            }
        }
        // Authentication schemes (digest, sasl, ...) are not supported.
        op::AUTH => Request::Refuse(code::AUTH_FAILED),
        _ => Request::Refuse(code::UNIMPLEMENTED),
    })
}

fn decode_read(op_code: i32, r: &mut Reader) -> Result<ReadOp, JuteError> {
    let path = r.string()?;
    let watch = r.bool()?;
    Ok(match op_code {
        op::EXISTS => ReadOp::Exists { path, watch },
        op::GET_DATA => ReadOp::GetData { path, watch },
        _ => ReadOp::GetChildren {
            path,
            watch,
            with_stat: op_code == op::GET_CHILDREN2,
        },
    })
}

/// True when the ACL vector is non-empty and every entry is `world:anyone` with all
/// permissions (`ZooDefs.Ids.OPEN_ACL_UNSAFE`), the only ACL keeper implements.
fn acl_is_open(r: &mut Reader) -> Result<bool, JuteError> {
    let acl = r.vector(|r| Ok((r.int()?, r.string()?, r.string()?)))?;
    Ok(!acl.is_empty()
        && acl
            .iter()
            .all(|(perms, scheme, id)| *perms == PERMS_ALL && scheme == "world" && id == "anyone"))
}

/// keeper stores text: data that is not UTF-8 is refused rather than altered.
fn text(data: Vec<u8>) -> Result<String, i32> {
    String::from_utf8(data).map_err(|_| code::BAD_ARGUMENTS)
}

/// `CreateRequest` (or `CreateTTLRequest`): the op, or the error code to refuse it with.
fn decode_create(op_code: i32, r: &mut Reader) -> Result<Result<Op, i32>, JuteError> {
    let path = r.string()?;
    let data = r.buffer()?;
    let open = acl_is_open(r)?;
    let flags = r.int()?;
    if op_code == op::CREATE_TTL {
        r.long()?;
    }
    let mode = match flags {
        0 => CreateMode::Persistent,
        1 => CreateMode::Ephemeral,
        2 => CreateMode::PersistentSequential,
        3 => CreateMode::EphemeralSequential,
        4 => CreateMode::Container,
        // TTL nodes (5, 6) are not implemented.
        5 | 6 => return Ok(Err(code::UNIMPLEMENTED)),
        _ => return Ok(Err(code::BAD_ARGUMENTS)),
    };
    if op_code == op::CREATE_TTL {
        return Ok(Err(code::UNIMPLEMENTED));
    }
    if !open {
        return Ok(Err(code::INVALID_ACL));
    }
    Ok(text(data).map(|data| Op::Create { path, data, mode }))
}

fn decode_set_data(r: &mut Reader) -> Result<Result<Op, i32>, JuteError> {
    let path = r.string()?;
    let data = r.buffer()?;
    let version = r.int()?;
    Ok(text(data).map(|data| Op::SetData {
        path,
        data,
        version,
    }))
}

/// `MultiTxnRecord`: `MultiHeader`s each followed by an op, ending with a `done` header.
fn decode_multi(r: &mut Reader) -> Result<Request, JuteError> {
    let mut ops = Vec::new();
    let mut refuse = None;
    loop {
        let (code, done, _err) = (r.int()?, r.bool()?, r.int()?);
        if done {
            break;
        }
        let op = match code {
            op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
                decode_create(code, r)?
            }
            op::DELETE => Ok(Op::Delete {
                path: r.string()?,
                version: r.int()?,
            }),
            op::SET_DATA => decode_set_data(r)?,
            op::CHECK => Ok(Op::Check {
                path: r.string()?,
                version: r.int()?,
            }),
            _ => return Ok(Request::Refuse(code::BAD_ARGUMENTS)),
        };
        match op {
            Ok(op) => ops.push((code, op)),
            Err(c) => refuse = refuse.or(Some(c)),
        }
    }
    Ok(match refuse {
        Some(c) => Request::Refuse(c),
        None => Request::Multi { ops },
    })
}

/// The `ReplyHeader`.
pub fn reply_header(xid: i32, zxid: i64, err: i32) -> Writer {
    let mut w = Writer::frame();
    w.int(xid).long(zxid).int(err);
    w
}

/// A watch notification: `ReplyHeader` with xid -1, then a `WatcherEvent`.
pub fn notification(event: &crate::api::WatchEvent) -> Vec<u8> {
    let mut w = reply_header(NOTIFICATION_XID, event.zxid as i64, code::OK);
    w.int(event_type(event.kind))
        .int(STATE_SYNC_CONNECTED)
        .string(&event.path);
    w.finish()
}

/// Writes a `MultiResponse` for a write multi. `codes` are the request's op codes, which decide
/// whether a create's result carries its Stat (create2, createContainer) or only its path.
pub fn multi_response(w: &mut Writer, codes: &[i32], results: &[OpResult]) {
    for (i, result) in results.iter().enumerate() {
        let code = codes.get(i).copied().unwrap_or(op::CREATE);
        match result {
            OpResult::Create { path, stat } => {
                if code == op::CREATE {
                    w.int(op::CREATE).bool(false).int(0).string(path);
                } else {
                    w.int(op::CREATE2)
                        .bool(false)
                        .int(0)
                        .string(path)
                        .stat(stat);
                }
            }
            OpResult::Delete => _ = w.int(op::DELETE).bool(false).int(0),
            OpResult::SetData { stat } => _ = w.int(op::SET_DATA).bool(false).int(0).stat(stat),
            OpResult::Check => _ = w.int(op::CHECK).bool(false).int(0),
            OpResult::Error { error } => {
                let err = zk_code(*error).unwrap_or(code::SYSTEM_ERROR);
                w.int(op::ERROR).bool(false).int(err).int(err);
            }
        }
    }
    w.int(-1).bool(true).int(-1);
}

/// The open ACL, as `GetACLResponse` lists it.
pub fn open_acl(w: &mut Writer) {
    w.int(1).int(PERMS_ALL).string("world").string("anyone");
}

/// A stat for replies that need one where keeper has none to give.
pub fn stat_or_default(stat: Option<&Stat>) -> Stat {
    stat.cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_acl_bytes(w: &mut Writer) {
        open_acl(w);
    }

    #[test]
    fn a_create2_request_decodes_to_a_write_that_replies_with_a_stat() {
        let mut w = Writer::frame();
        w.int(5)
            .int(op::CREATE2)
            .string("/election/leader_")
            .buffer(b"node1");
        open_acl_bytes(&mut w);
        w.int(3);
        let frame = w.finish();
        let framed = decode_request(&frame[4..]).unwrap();
        assert_eq!(framed.xid, 5);
        assert_eq!(
            framed.request,
            Request::Write {
                op: Op::Create {
                    path: "/election/leader_".into(),
                    data: "node1".into(),
                    mode: CreateMode::EphemeralSequential
                },
                reply_stat: true
            }
        );
    }

    #[test]
    fn an_acl_other_than_the_open_one_is_refused_with_invalid_acl() {
        let mut w = Writer::frame();
        w.int(1).int(op::CREATE).string("/a").buffer(b"");
        w.int(1).int(1).string("world").string("anyone");
        w.int(0);
        let frame = w.finish();
        assert_eq!(
            decode_request(&frame[4..]).unwrap().request,
            Request::Refuse(code::INVALID_ACL)
        );
    }

    #[test]
    fn a_truncated_request_is_an_error() {
        let mut w = Writer::frame();
        w.int(1).int(op::GET_DATA).string("/a");
        let frame = w.finish();
        assert!(decode_request(&frame[4..]).is_err());
    }
}
