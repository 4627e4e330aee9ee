//! keeperd's ZooKeeper port on the wire, with a minimal jute client over a real socket: the
//! handshake (new session, reconnect, wrong password, a client ahead of the server), the order
//! of a notification and a reply, four-letter words, and bad frames (which close that
//! connection only).

mod support;

use keeper::zk::jute::{Reader, Writer};
use keeper::zk::proto::{code, op};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use support::Node;

/// Bound on any single read from the server.
const READ_TIMEOUT_MS: u64 = 15_000;
/// How long a node may take to start serving.
const SERVING_TIMEOUT_MS: u64 = 30_000;

/// Polls `ready` until it holds, for at most `SERVING_TIMEOUT_MS`.
fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_millis(SERVING_TIMEOUT_MS);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up after {SERVING_TIMEOUT_MS} ms waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start_node(dir: &tempfile::TempDir) -> (Node, SocketAddr) {
    let zk: SocketAddr = format!("127.0.0.1:{}", support::free_port())
        .parse()
        .unwrap();
    let node = Node::start(
        1,
        &dir.path().join("n1"),
        &["--zk-addr".to_string(), zk.to_string()],
    );
    until("the node serves", || {
        four_letter(zk, "srvr").contains("Mode: standalone")
    });
    (node, zk)
}

struct Connected {
    timeout_ms: i32,
    session: i64,
    password: Vec<u8>,
}

/// One raw connection.
struct Wire {
    s: TcpStream,
    xid: i32,
}

/// A reply or notification: header, then the rest of the frame.
struct Frame {
    xid: i32,
    zxid: i64,
    err: i32,
    body: Vec<u8>,
}

impl Wire {
    fn open(addr: SocketAddr) -> Wire {
        let s = TcpStream::connect(addr).expect("connect to the zk port");
        s.set_read_timeout(Some(Duration::from_millis(READ_TIMEOUT_MS)))
            .unwrap();
        Wire { s, xid: 0 }
    }

    fn write(&mut self, frame: &[u8]) {
        self.s.write_all(frame).expect("write to the zk port");
    }

    /// A whole frame, or `None` if the server closed the connection.
    fn read_frame(&mut self) -> Option<Vec<u8>> {
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.s.read_exact(&mut body).ok()?;
        Some(body)
    }

    fn handshake(&mut self, last_zxid: i64, session: i64, password: &[u8]) -> Option<Connected> {
        let mut w = Writer::frame();
        w.int(0)
            .long(last_zxid)
            .int(30_000)
            .long(session)
            .buffer(password)
            .bool(false);
        self.write(&w.finish());
        let body = self.read_frame()?;
        let mut r = Reader::new(&body);
        assert_eq!(r.int().unwrap(), 0, "protocol version");
        let c = Connected {
            timeout_ms: r.int().unwrap(),
            session: r.long().unwrap(),
            password: r.buffer().unwrap(),
        };
        assert!(
            r.bool().is_ok(),
            "the readOnly byte follows for a new client"
        );
        Some(c)
    }

    fn request(&mut self, op_code: i32, body: impl FnOnce(&mut Writer)) -> i32 {
        self.xid += 1;
        let mut w = Writer::frame();
        w.int(self.xid).int(op_code);
        body(&mut w);
        self.write(&w.finish());
        self.xid
    }

    fn next(&mut self) -> Frame {
        let body = self.read_frame().expect("a frame from the server");
        let mut r = Reader::new(&body);
        let (xid, zxid, err) = (r.int().unwrap(), r.long().unwrap(), r.int().unwrap());
        Frame {
            xid,
            zxid,
            err,
            body: body[16..].to_vec(),
        }
    }

    fn call(&mut self, op_code: i32, body: impl FnOnce(&mut Writer)) -> Frame {
        let xid = self.request(op_code, body);
        let f = self.next();
        assert_eq!(f.xid, xid, "replies come in request order");
        f
    }

    fn create(&mut self, path: &str, data: &str, flags: i32) -> Frame {
        self.call(op::CREATE, |w| {
            w.string(path).buffer(data.as_bytes());
            keeper::zk::proto::open_acl(w);
            w.int(flags);
        })
    }

    fn get_data(&mut self, path: &str, watch: bool) -> Frame {
        self.call(op::GET_DATA, |w| _ = w.string(path).bool(watch))
    }

    /// True once the server has closed the connection (EOF or reset).
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
    }
}

fn four_letter(addr: SocketAddr, word: &str) -> String {
    let mut w = Wire::open(addr);
    w.write(word.as_bytes());
    let mut out = String::new();
    w.s.read_to_string(&mut out).expect("read the answer");
    out
}

#[test]
fn sessions_survive_reconnects_and_refuse_wrong_passwords_and_clients_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, addr) = start_node(&dir);
    let mut a = Wire::open(addr);
    let c = a.handshake(0, 0, &[0; 16]).expect("a session");
    assert_ne!(c.session, 0);
    // Clamped to keeper's maximum: 20 ticks of the default 200 ms.
    assert_eq!(c.timeout_ms, 4_000);
    assert_eq!(c.password.len(), 16);
    let created = a.create("/e", "one", 1);
    assert_eq!(created.err, code::OK);
    let last_zxid = created.zxid;
    drop(a);

    // The same id and password on a new connection: the session and its ephemeral node live.
    let mut b = Wire::open(addr);
    let again = b
        .handshake(last_zxid, c.session, &c.password)
        .expect("reconnected");
    assert_eq!(again.session, c.session);
    let got = b.get_data("/e", false);
    assert_eq!(got.err, code::OK);
    assert_eq!(Reader::new(&got.body).buffer().unwrap(), b"one");

    // A wrong password: ZooKeeper's "expired" answer (timeout 0, session 0), then close.
    let mut wrong = Wire::open(addr);
    let mut bad = c.password.clone();
    bad[0] ^= 1;
    let refused = wrong.handshake(0, c.session, &bad).expect("an answer");
    assert_eq!((refused.timeout_ms, refused.session), (0, 0));
    assert!(wrong.closed());

    // A client that has seen a zxid this server has not: closed without an answer.
    let mut ahead = Wire::open(addr);
    assert!(ahead.handshake(last_zxid + 1_000, 0, &[0; 16]).is_none());

    // closeSession ends it; reconnecting then gets the expired answer.
    let bye = b.call(op::CLOSE_SESSION, |_| {});
    assert_eq!(bye.err, code::OK);
    assert!(b.closed());
    let mut late = Wire::open(addr);
    let expired = late
        .handshake(bye.zxid, c.session, &c.password)
        .expect("an answer");
    assert_eq!((expired.timeout_ms, expired.session), (0, 0));
}

#[test]
fn a_notification_arrives_before_the_reply_that_reads_the_change() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, addr) = start_node(&dir);
    let mut a = Wire::open(addr);
    a.handshake(0, 0, &[0; 16]).unwrap();
    assert_eq!(a.create("/w", "v0", 0).err, code::OK);
    assert_eq!(a.get_data("/w", true).err, code::OK);
    // The session's own write fires its watch: the event comes first, then the reply.
    let xid = a.request(op::SET_DATA, |w| _ = w.string("/w").buffer(b"v1").int(-1));
    let first = a.next();
    assert_eq!(first.xid, -1, "the notification precedes the setData reply");
    let mut r = Reader::new(&first.body);
    assert_eq!(r.int().unwrap(), 3, "NodeDataChanged");
    assert_eq!(r.int().unwrap(), 3, "SyncConnected");
    assert_eq!(r.string().unwrap(), "/w");
    let reply = a.next();
    assert_eq!((reply.xid, reply.err), (xid, code::OK));

    // Error codes are ZooKeeper's.
    assert_eq!(a.create("/w", "", 0).err, code::NODE_EXISTS);
    assert_eq!(a.create("/none/x", "", 0).err, code::NO_NODE);
    let bad_version = a.call(op::SET_DATA, |w| _ = w.string("/w").buffer(b"").int(7));
    assert_eq!(bad_version.err, code::BAD_VERSION);
    assert_eq!(a.create("/w/c", "", 0).err, code::OK);
    let not_empty = a.call(op::DELETE, |w| _ = w.string("/w").int(-1));
    assert_eq!(not_empty.err, code::NOT_EMPTY);
    assert_eq!(a.create("/eph", "", 1).err, code::OK);
    assert_eq!(
        a.create("/eph/c", "", 0).err,
        code::NO_CHILDREN_FOR_EPHEMERALS
    );
    let count = a.call(op::GET_ALL_CHILDREN_NUMBER, |w| _ = w.string("/w"));
    assert_eq!(count.err, code::OK);
    assert_eq!(Reader::new(&count.body).int().unwrap(), 1);
    let no_watch = a.call(op::REMOVE_WATCHES, |w| _ = w.string("/w").int(3));
    assert_eq!(no_watch.err, code::NO_WATCHER);
}

#[test]
fn setwatches_after_a_reconnect_fires_what_the_client_missed() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, addr) = start_node(&dir);
    let mut a = Wire::open(addr);
    let c = a.handshake(0, 0, &[0; 16]).unwrap();
    let seen = a.create("/m", "v0", 0).zxid;
    drop(a);
    // Changed while the client was away.
    let mut other = Wire::open(addr);
    other.handshake(0, 0, &[0; 16]).unwrap();
    let set = other.call(op::SET_DATA, |w| _ = w.string("/m").buffer(b"v1").int(-1));
    assert_eq!(set.err, code::OK);
    assert_eq!(other.create("/m2", "", 0).err, code::OK);

    let mut b = Wire::open(addr);
    b.handshake(seen, c.session, &c.password).unwrap();
    let xid = b.request(op::SET_WATCHES, |w| {
        w.long(seen);
        w.strings(&["/m".into()]);
        w.strings(&["/m2".into(), "/m3".into()]);
        w.strings(&[]);
    });
    let mut events = Vec::new();
    loop {
        let f = b.next();
        if f.xid == xid {
            break;
        }
        assert_eq!(f.xid, -1);
        let mut r = Reader::new(&f.body);
        let kind = r.int().unwrap();
        r.int().unwrap();
        events.push((kind, r.string().unwrap()));
    }
    // /m changed after `seen` (NodeDataChanged), /m2 now exists (NodeCreated); /m3 is still
    // absent, so its watch is set and fires when it is created.
    events.sort();
    assert_eq!(events, vec![(1, "/m2".to_string()), (3, "/m".to_string())]);
    assert_eq!(other.create("/m3", "", 0).err, code::OK);
    let f = b.next();
    assert_eq!(f.xid, -1);
    let mut r = Reader::new(&f.body);
    assert_eq!((r.int().unwrap(), r.int().unwrap()), (1, 3));
    assert_eq!(r.string().unwrap(), "/m3");
}

/// A session keeps its watches on a node across connections (ZooKeeper drops them with the
/// connection): when `SetWatches` reports a change as missed, the registration it still held
/// there for that watch goes with the event, or the next change would fire it a second time.
#[test]
fn a_watch_setwatches_reports_as_missed_does_not_fire_again() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, addr) = start_node(&dir);
    let mut other = Wire::open(addr);
    other.handshake(0, 0, &[0; 16]).unwrap();
    let mut a = Wire::open(addr);
    let c = a.handshake(0, 0, &[0; 16]).unwrap();
    let seen = a.create("/d", "v0", 0).zxid;
    let set = other.call(op::SET_DATA, |w| _ = w.string("/d").buffer(b"v1").int(-1));
    assert_eq!(set.err, code::OK);
    // The watch registered here, after the change...
    assert_eq!(a.get_data("/d", true).err, code::OK);
    drop(a);
    // ... and a client that resumes from a zxid before it: the change is reported as missed.
    let mut b = Wire::open(addr);
    b.handshake(seen, c.session, &c.password).unwrap();
    let xid = b.request(op::SET_WATCHES, |w| {
        w.long(seen);
        w.strings(&["/d".into()]);
        w.strings(&[]);
        w.strings(&[]);
    });
    let mut events = 0;
    while b.next().xid != xid {
        events += 1;
    }
    assert_eq!(events, 1, "the missed change is reported once");
    // The next change: no watch is left, so no event before the reply that follows it.
    let set = other.call(op::SET_DATA, |w| _ = w.string("/d").buffer(b"v2").int(-1));
    assert_eq!(set.err, code::OK);
    let probe = b.request(op::EXISTS, |w| _ = w.string("/d").bool(false));
    let f = b.next();
    assert_eq!(f.xid, probe, "an event fired for a watch already reported");
}

#[test]
fn bad_frames_close_only_their_own_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (node, addr) = start_node(&dir);
    let mut good = Wire::open(addr);
    good.handshake(0, 0, &[0; 16]).unwrap();
    assert_eq!(good.create("/ok", "", 0).err, code::OK);

    // A request whose record ends early.
    let mut truncated = Wire::open(addr);
    truncated.handshake(0, 0, &[0; 16]).unwrap();
    let mut w = Writer::frame();
    w.int(1).int(op::GET_DATA).int(100);
    truncated.write(&w.finish());
    assert!(truncated.closed());

    // A length prefix far beyond the frame limit.
    let mut huge = Wire::open(addr);
    huge.handshake(0, 0, &[0; 16]).unwrap();
    huge.write(&i32::MAX.to_be_bytes());
    assert!(huge.closed());

    // A negative length before any handshake.
    let mut negative = Wire::open(addr);
    negative.write(&(-5i32).to_be_bytes());
    assert!(negative.closed());

    // Garbage instead of a ConnectRequest.
    let mut garbage = Wire::open(addr);
    garbage.write(&[0, 0, 0, 3, 1, 2, 3]);
    assert!(garbage.closed());

    // The first connection is untouched.
    let got = good.get_data("/ok", false);
    assert_eq!(got.err, code::OK);
    // Each closed with one line saying why.
    for why in [
        "zk connection closed: malformed request",
        "frame length 2147483647 is out of range",
        "frame length -5 is out of range",
        "malformed ConnectRequest",
    ] {
        until(why, || node.log().contains(why));
    }
}

#[test]
fn four_letter_words_answer_in_text() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, addr) = start_node(&dir);
    assert_eq!(four_letter(addr, "ruok"), "imok");
    let srvr = four_letter(addr, "srvr");
    assert!(srvr.contains("Zxid: 0x"), "{srvr}");
    let mntr = four_letter(addr, "mntr");
    for key in [
        "zk_server_state\tstandalone",
        "zk_zxid\t",
        "zk_epoch\t",
        "zk_outstanding_requests\t0",
    ] {
        assert!(mntr.contains(key), "mntr lacks {key:?}:\n{mntr}");
    }
    assert!(four_letter(addr, "stat").contains("Clients:"));
}

#[test]
fn multi_reports_every_op_and_multiread_answers_each_read() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, addr) = start_node(&dir);
    let mut a = Wire::open(addr);
    a.handshake(0, 0, &[0; 16]).unwrap();
    assert_eq!(a.create("/m", "d", 0).err, code::OK);

    // create2 /m/x, then a check that fails: the multi fails as a whole; the header says OK
    // and each op's result says what happened (ZooKeeper's MultiResponse).
    let failed = a.call(op::MULTI, |w| {
        w.int(op::CREATE2).bool(false).int(-1);
        w.string("/m/x").buffer(b"");
        keeper::zk::proto::open_acl(w);
        w.int(0);
        w.int(op::CHECK).bool(false).int(-1).string("/m").int(5);
        w.int(-1).bool(true).int(-1);
    });
    assert_eq!(failed.err, code::OK);
    let mut r = Reader::new(&failed.body);
    let mut results = Vec::new();
    loop {
        let (kind, done, err) = (r.int().unwrap(), r.bool().unwrap(), r.int().unwrap());
        if done {
            break;
        }
        assert_eq!(kind, op::ERROR);
        assert_eq!(r.int().unwrap(), err, "ErrorResponse repeats the code");
        results.push(err);
    }
    assert_eq!(results, vec![code::OK, code::BAD_VERSION]);
    assert_eq!(
        a.get_data("/m/x", false).err,
        code::NO_NODE,
        "nothing applied"
    );

    // multiRead: each read answered on its own, errors included.
    let reads = a.call(op::MULTI_READ, |w| {
        w.int(op::GET_DATA)
            .bool(false)
            .int(-1)
            .string("/m")
            .bool(false);
        w.int(op::GET_CHILDREN)
            .bool(false)
            .int(-1)
            .string("/none")
            .bool(false);
        w.int(op::GET_CHILDREN)
            .bool(false)
            .int(-1)
            .string("/")
            .bool(false);
        w.int(-1).bool(true).int(-1);
    });
    assert_eq!(reads.err, code::OK);
    let mut r = Reader::new(&reads.body);
    assert_eq!((r.int().unwrap(), r.bool().unwrap()), (op::GET_DATA, false));
    r.int().unwrap();
    assert_eq!(r.buffer().unwrap(), b"d");
    skip_stat(&mut r);
    let (kind, done, err) = (r.int().unwrap(), r.bool().unwrap(), r.int().unwrap());
    assert_eq!((kind, done, err), (op::ERROR, false, code::NO_NODE));
    assert_eq!(r.int().unwrap(), code::NO_NODE);
    assert_eq!(
        (r.int().unwrap(), r.bool().unwrap()),
        (op::GET_CHILDREN, false)
    );
    r.int().unwrap();
    assert_eq!(
        r.vector(|r| r.string()).unwrap(),
        vec!["m".to_string(), "zookeeper".to_string()]
    );
    assert_eq!((r.int().unwrap(), r.bool().unwrap()), (-1, true));
}

/// Skips a jute `Stat` (czxid, mzxid, ctime, mtime, version, cversion, aversion,
/// ephemeralOwner, dataLength, numChildren, pzxid).
fn skip_stat(r: &mut Reader) {
    for _ in 0..4 {
        r.long().unwrap();
    }
    for _ in 0..3 {
        r.int().unwrap();
    }
    r.long().unwrap();
    r.int().unwrap();
    r.int().unwrap();
    r.long().unwrap();
}
