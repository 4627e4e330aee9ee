//! Jute, ZooKeeper's record serialisation (`org.apache.jute.BinaryInputArchive`): big-endian
//! integers, a one-byte boolean, and length-prefixed strings, buffers and vectors whose length
//! -1 means null. Every length is checked against what is left of the frame, so a malformed
//! record is an error, never a huge allocation.

use crate::api::Stat;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JuteError {
    #[error("record ends early: wanted {wanted} more bytes at offset {at}")]
    Short { at: usize, wanted: usize },
    #[error("negative length {0}")]
    BadLength(i32),
    #[error("a string is not UTF-8")]
    NotUtf8,
}

/// Reads one frame's records.
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, at: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], JuteError> {
        if self.remaining() < n {
            return Err(JuteError::Short {
                at: self.at,
                wanted: n,
            });
        }
        let bytes = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(bytes)
    }

    pub fn int(&mut self) -> Result<i32, JuteError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn long(&mut self) -> Result<i64, JuteError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    pub fn bool(&mut self) -> Result<bool, JuteError> {
        Ok(self.take(1)?[0] != 0)
    }

    /// A length: -1 (null) reads as `None`; any other negative length is malformed.
    fn len(&mut self) -> Result<Option<usize>, JuteError> {
        match self.int()? {
            -1 => Ok(None),
            n if n < 0 => Err(JuteError::BadLength(n)),
            n => Ok(Some(n as usize)),
        }
    }

    /// A buffer; null reads as empty (ZooKeeper treats null data as empty).
    pub fn buffer(&mut self) -> Result<Vec<u8>, JuteError> {
        match self.len()? {
            None => Ok(Vec::new()),
            Some(n) => Ok(self.take(n)?.to_vec()),
        }
    }

    /// A ustring; null reads as empty.
    pub fn string(&mut self) -> Result<String, JuteError> {
        let bytes = self.buffer()?;
        String::from_utf8(bytes).map_err(|_| JuteError::NotUtf8)
    }

    /// A vector of `T`, each read by `item`; null reads as empty. The count is bounded by the
    /// bytes left (each element takes at least one), so a lying count cannot allocate much.
    pub fn vector<T>(
        &mut self,
        mut item: impl FnMut(&mut Reader<'a>) -> Result<T, JuteError>,
    ) -> Result<Vec<T>, JuteError> {
        let Some(n) = self.len()? else {
            return Ok(Vec::new());
        };
        if n > self.remaining() {
            return Err(JuteError::Short {
                at: self.at,
                wanted: n,
            });
        }
        (0..n).map(|_| item(self)).collect()
    }
}

/// Writes records into a frame. `Writer::frame` reserves the 4-byte length prefix that
/// `finish` fills in.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A frame: the length prefix comes first.
    pub fn frame() -> Writer {
        Writer {
            buf: vec![0, 0, 0, 0],
        }
    }

    pub fn int(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn long(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.push(v as u8);
        self
    }

    pub fn buffer(&mut self, v: &[u8]) -> &mut Self {
        self.int(v.len() as i32);
        self.buf.extend_from_slice(v);
        self
    }

    pub fn string(&mut self, v: &str) -> &mut Self {
        self.buffer(v.as_bytes())
    }

    pub fn strings(&mut self, v: &[String]) -> &mut Self {
        self.int(v.len() as i32);
        for s in v {
            self.string(s);
        }
        self
    }

    /// `org.apache.zookeeper.data.Stat`. keeper has no ACL versions: `aversion` is 0.
    pub fn stat(&mut self, s: &Stat) -> &mut Self {
        self.long(s.czxid as i64)
            .long(s.mzxid as i64)
            .long(s.ctime as i64)
            .long(s.mtime as i64)
            .int(s.version)
            .int(s.cversion)
            .int(0)
            .long(s.ephemeral_owner as i64)
            .int(s.data_length as i32)
            .int(s.num_children as i32)
            .long(s.pzxid as i64)
    }

    /// The finished frame with its length prefix.
    pub fn finish(mut self) -> Vec<u8> {
        let len = (self.buf.len() - 4) as i32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips_and_carries_its_length() {
        let mut w = Writer::frame();
        w.int(-2).long(7).bool(true).string("/a").buffer(b"");
        w.strings(&["x".into(), "yz".into()]);
        let frame = w.finish();
        assert_eq!(&frame[..4], &((frame.len() - 4) as i32).to_be_bytes());
        let mut r = Reader::new(&frame[4..]);
        assert_eq!(r.int(), Ok(-2));
        assert_eq!(r.long(), Ok(7));
        assert_eq!(r.bool(), Ok(true));
        assert_eq!(r.string().as_deref(), Ok("/a"));
        assert_eq!(r.buffer(), Ok(vec![]));
        assert_eq!(r.vector(|r| r.string()), Ok(vec!["x".into(), "yz".into()]));
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn lying_lengths_are_errors_not_allocations() {
        let mut w = Writer::frame();
        w.int(i32::MAX);
        let frame = w.finish();
        assert!(matches!(
            Reader::new(&frame[4..]).buffer(),
            Err(JuteError::Short { .. })
        ));
        assert!(matches!(
            Reader::new(&frame[4..]).vector(|r| r.int()),
            Err(JuteError::Short { .. })
        ));
        assert_eq!(
            Reader::new(&(-5i32).to_be_bytes()).string(),
            Err(JuteError::BadLength(-5))
        );
        assert_eq!(
            Reader::new(&(-1i32).to_be_bytes()).string(),
            Ok(String::new())
        );
    }
}
