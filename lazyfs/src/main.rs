//! `schism-lazyfs --backing DIR --mount DIR --control SOCKET [--name NAME]`: mounts a lazyfs
//! (see the library) and serves its control socket until the mount is unmounted
//! (`fusermount3 -u DIR`).

use anyhow::Context;
use clap::Parser;
use lazyfs::disk::Disk;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Parser)]
#[command(
    name = "schism-lazyfs",
    about = "A FUSE pass-through filesystem that loses unsynced writes on command"
)]
struct Args {
    /// The real directory that holds what is durable.
    #[arg(long)]
    backing: PathBuf,
    /// Where to mount (an existing, empty directory).
    #[arg(long)]
    mount: PathBuf,
    /// The control socket to create.
    #[arg(long)]
    control: PathBuf,
    /// The mount's source name in /proc/mounts.
    #[arg(long, default_value = "lazyfs")]
    name: String,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("schism-lazyfs: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if let Some(missing) = lazyfs::missing_prerequisite() {
        anyhow::bail!(missing);
    }
    let disk = Disk::new(&args.backing).with_context(|| {
        format!(
            "cannot use {} as the backing directory",
            args.backing.display()
        )
    })?;
    let disk = Arc::new(Mutex::new(disk));
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(args.name.clone()),
        fuser::MountOption::Subtype(lazyfs::SUBTYPE.to_string()),
        fuser::MountOption::NoAtime,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    let session = fuser::spawn_mount(lazyfs::fs::LazyFs::new(disk.clone()), &args.mount, &config)
        .with_context(|| format!("cannot mount on {}", args.mount.display()))?;
    // The socket exists only once the mount is up: a launcher that can talk to it knows the
    // mount is ready.
    match std::fs::remove_file(&args.control) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).context(format!("removing a stale {}", args.control.display()));
        }
        _ => {}
    }
    let listener = UnixListener::bind(&args.control)
        .with_context(|| format!("cannot create {}", args.control.display()))?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if let Err(e) = lazyfs::serve_connection(&disk, stream) {
                eprintln!("schism-lazyfs: control connection: {e}");
            }
        }
    });
    // Returns when the filesystem is unmounted.
    let ended = session.join();
    let _ = std::fs::remove_file(&args.control);
    ended.context("the filesystem session failed")
}
