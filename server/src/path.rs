//! Znode paths. (Being written by the tree work.)
use crate::api::KeeperError;

pub fn validate(_path: &str) -> Result<(), KeeperError> {
    todo!()
}
