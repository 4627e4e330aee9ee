//! Finding and asking keeperd: which binary a run deploys when none is named, whether the docker
//! backend can run it (statically linked), and its `--version` for `test.json`.

use crate::store::Versions;
use cluster::BackendKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest `keeperd --version` may take.
const VERSION_TIMEOUT_MS: u64 = 5_000;

/// `keeperd --version`, if it answers in time.
pub async fn versions(keeperd: &Path) -> Versions {
    let keeperd_version = async {
        let out = tokio::process::Command::new(keeperd)
            .arg("--version")
            .kill_on_drop(true)
            .output()
            .await
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    Versions {
        schism: env!("CARGO_PKG_VERSION").to_string(),
        keeperd: tokio::time::timeout(Duration::from_millis(VERSION_TIMEOUT_MS), keeperd_version)
            .await
            .ok()
            .flatten(),
        zookeeper: None,
    }
}

/// Target triple of the statically linked keeperd the docker backend needs.
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Finds keeperd: next to this binary (the usual `target/<profile>/` layout), else on PATH.
/// For docker, the statically linked build (`target/<triple>/release/keeperd`) if it exists.
pub fn default_keeperd(backend: BackendKind) -> PathBuf {
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let static_build = dir
            .join("..")
            .join(STATIC_TARGET)
            .join("release")
            .join("keeperd");
        if backend == BackendKind::Docker && static_build.is_file() {
            return static_build;
        }
        for candidate in [dir.join("keeperd"), dir.join("../keeperd")] {
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("keeperd")
}

/// Most bytes of an ELF file read to look for its program headers.
const MAX_ELF_HEADER_BYTES: u64 = 64 * 1024;

/// Whether `path` is an ELF executable without a dynamic loader (PT_INTERP): the only kind a
/// `FROM scratch` image can run. None when it is not a 64-bit little-endian ELF we can read.
pub fn is_static_elf(path: &Path) -> Option<bool> {
    use std::io::Read;
    const PT_INTERP: u32 = 3;
    let mut head = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_ELF_HEADER_BYTES)
        .read_to_end(&mut head)
        .ok()?;
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(head.get(o..o + 2)?.try_into().ok()?));
    let phoff = u64::from_le_bytes(head.get(0x20..0x28)?.try_into().ok()?) as usize;
    let (phentsize, phnum) = (u16_at(0x36)? as usize, u16_at(0x38)? as usize);
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let p_type = u32::from_le_bytes(head.get(at..at + 4)?.try_into().ok()?);
        if p_type == PT_INTERP {
            return Some(false);
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_executables_are_told_apart_from_dynamic_ones() {
        assert_eq!(is_static_elf(Path::new("/bin/sh")), Some(false));
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("script");
        std::fs::write(&text, "#!/bin/sh\n").unwrap();
        assert_eq!(is_static_elf(&text), None);
        assert_eq!(is_static_elf(&dir.path().join("missing")), None);
    }
}
