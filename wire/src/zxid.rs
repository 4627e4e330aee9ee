//! Transaction ids and the ids derived from them. A zxid is `epoch << 32 | counter`: the
//! epoch of the leader that proposed the transaction, and its position in that epoch.

/// A transaction id: `epoch << 32 | counter`. Totally orders every change of the tree.
pub type Zxid = u64;
/// A session id. Sessions are created by a transaction; the id is that transaction's zxid.
pub type SessionId = u64;
/// A server id, as given with `keeperd --id`.
pub type NodeId = u64;

/// The zxid of `counter` in `epoch`.
pub fn make_zxid(epoch: u32, counter: u32) -> Zxid {
    ((epoch as u64) << 32) | counter as u64
}

/// The epoch half of a zxid.
pub fn epoch_of(zxid: Zxid) -> u32 {
    (zxid >> 32) as u32
}

/// The counter half of a zxid.
pub fn counter_of(zxid: Zxid) -> u32 {
    zxid as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zxid_splits_into_its_epoch_and_counter() {
        let z = make_zxid(7, 42);
        assert_eq!(z, (7 << 32) | 42);
        assert_eq!((epoch_of(z), counter_of(z)), (7, 42));
        assert!(
            make_zxid(2, 0) > make_zxid(1, u32::MAX),
            "epochs order before counters"
        );
    }
}
