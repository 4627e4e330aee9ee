//! The node state machine.
use super::*;
use crate::api::{DigestReply, Status};

pub struct Core {}

impl Core {
    pub fn new(_config: Config, _recovered: Recovered, _now: Millis) -> Core {
        todo!()
    }
    pub fn step(&mut self, _now: Millis, _input: Input) -> Vec<Output> {
        todo!()
    }
    pub fn status(&self) -> Status {
        todo!()
    }
    pub fn digest(&self) -> DigestReply {
        todo!()
    }
    /// The applied tree, for the shell to save as a snapshot.
    pub fn snapshot(&self) -> crate::tree::Snapshot {
        todo!()
    }
    /// The shell saved a snapshot at `zxid`; the in-memory log may forget what precedes it.
    pub fn compact(&mut self, _zxid: Zxid) {
        todo!()
    }
}
