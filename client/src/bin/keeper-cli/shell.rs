//! The interactive shell: zkCli.sh's command language over one keeper session.

use keeper_client::{Error, Event, Session};
use keeper_wire::{ANY_VERSION, CreateMode, ErrorCode, EventKind, Stat};

/// Longest command line accepted; longer lines are refused instead of buffered.
pub const MAX_LINE_BYTES: usize = 2 * 1024 * 1024;

pub const HELP: &str = "\
commands:
  create [-e] [-s] [-c] PATH [DATA]   -e ephemeral, -s sequential, -c container
  get [-s] [-w] PATH                  data, then the stat (-w: watch)
  set [-s] [-v VERSION] PATH DATA [VERSION]
  delete [-v VERSION] PATH [VERSION]
  ls [-s] [-w] PATH                   children as [a, b] (-s: with stat, -w: watch)
  stat [-w] PATH
  sync PATH
  watch PATH                          watch the node and its children; events print as WATCHER:: lines
  help
  quit";

/// One parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Create {
        path: String,
        data: String,
        mode: CreateMode,
    },
    Get {
        path: String,
        watch: bool,
    },
    Set {
        path: String,
        data: String,
        version: i32,
        show_stat: bool,
    },
    Delete {
        path: String,
        version: i32,
    },
    Ls {
        path: String,
        watch: bool,
        show_stat: bool,
    },
    Stat {
        path: String,
        watch: bool,
    },
    Sync {
        path: String,
    },
    Watch {
        path: String,
    },
    Help,
    Quit,
}

/// Splits a line into words: whitespace separates, `"..."` and `'...'` group, and a backslash
/// escapes the next character outside single quotes.
pub fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(escaped) => word.push(escaped),
                            None => return Err("unterminated \"".to_string()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated \"".to_string()),
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated '".to_string()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(escaped) => word.push(escaped),
                    None => return Err("trailing backslash".to_string()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Flags (single letters, combinable as `-es`), an optional `-v VERSION`, and positionals.
struct Args {
    flags: Vec<char>,
    version: Option<i32>,
    positional: Vec<String>,
}

fn parse_version(text: &str) -> Result<i32, String> {
    text.parse()
        .map_err(|_| format!("bad version {text:?}: expected an integer (-1: any)"))
}

fn split_args(command: &str, words: &[String], allowed: &str) -> Result<Args, String> {
    let mut args = Args {
        flags: Vec::new(),
        version: None,
        positional: Vec::new(),
    };
    let mut rest = words.iter();
    while let Some(word) = rest.next() {
        // A lone "-" or a negative number is data or a version, not a flag.
        let is_flag = word.len() > 1
            && word.starts_with('-')
            && !word[1..].starts_with(|c: char| c.is_ascii_digit())
            && args.positional.is_empty();
        if !is_flag {
            args.positional.push(word.clone());
            continue;
        }
        for flag in word[1..].chars() {
            if !allowed.contains(flag) {
                return Err(format!("{command}: unknown option -{flag}"));
            }
            if flag == 'v' {
                let value = rest
                    .next()
                    .ok_or_else(|| format!("{command}: -v needs a version"))?;
                args.version = Some(parse_version(value)?);
            } else {
                args.flags.push(flag);
            }
        }
    }
    Ok(args)
}

fn usage(command: &str) -> String {
    let line = HELP
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{command} ")))
        .map(|l| l.trim().split("  ").next().unwrap_or(command).to_string())
        .unwrap_or_else(|| command.to_string());
    format!("usage: {line}")
}

/// Parses one line; `Ok(None)` for a blank line or a comment.
pub fn parse(line: &str) -> Result<Option<Command>, String> {
    let words = tokenize(line)?;
    let Some((name, rest)) = words.split_first() else {
        return Ok(None);
    };
    if name.starts_with('#') {
        return Ok(None);
    }
    let name = name.as_str();
    let command = match name {
        "create" => {
            let args = split_args(name, rest, "esc")?;
            let (path, data) = match args.positional.as_slice() {
                [path] => (path.clone(), String::new()),
                [path, data] => (path.clone(), data.clone()),
                _ => return Err(usage(name)),
            };
            let has = |f| args.flags.contains(&f);
            let mode = match (has('e'), has('s'), has('c')) {
                (false, false, false) => CreateMode::Persistent,
                (true, false, false) => CreateMode::Ephemeral,
                (false, true, false) => CreateMode::PersistentSequential,
                (true, true, false) => CreateMode::EphemeralSequential,
                (false, false, true) => CreateMode::Container,
                _ => return Err("create: -c cannot be combined with -e or -s".to_string()),
            };
            Command::Create { path, data, mode }
        }
        "get" => {
            let args = split_args(name, rest, "sw")?;
            match args.positional.as_slice() {
                [path] => Command::Get {
                    path: path.clone(),
                    watch: args.flags.contains(&'w'),
                },
                _ => return Err(usage(name)),
            }
        }
        "set" => {
            let args = split_args(name, rest, "sv")?;
            let (path, data, version) = match args.positional.as_slice() {
                [path, data] => (path, data, args.version.unwrap_or(ANY_VERSION)),
                [path, data, version] if args.version.is_none() => {
                    (path, data, parse_version(version)?)
                }
                _ => return Err(usage(name)),
            };
            Command::Set {
                path: path.clone(),
                data: data.clone(),
                version,
                show_stat: args.flags.contains(&'s'),
            }
        }
        "delete" | "rm" => {
            let args = split_args(name, rest, "v")?;
            let (path, version) = match args.positional.as_slice() {
                [path] => (path, args.version.unwrap_or(ANY_VERSION)),
                [path, version] if args.version.is_none() => (path, parse_version(version)?),
                _ => return Err(usage("delete")),
            };
            Command::Delete {
                path: path.clone(),
                version,
            }
        }
        "ls" => {
            let args = split_args(name, rest, "sw")?;
            match args.positional.as_slice() {
                [path] => Command::Ls {
                    path: path.clone(),
                    watch: args.flags.contains(&'w'),
                    show_stat: args.flags.contains(&'s'),
                },
                _ => return Err(usage(name)),
            }
        }
        "stat" => {
            let args = split_args(name, rest, "w")?;
            match args.positional.as_slice() {
                [path] => Command::Stat {
                    path: path.clone(),
                    watch: args.flags.contains(&'w'),
                },
                _ => return Err(usage(name)),
            }
        }
        "sync" | "watch" => match rest {
            [path] if name == "sync" => Command::Sync { path: path.clone() },
            [path] => Command::Watch { path: path.clone() },
            _ => return Err(usage(name)),
        },
        "help" | "?" => Command::Help,
        "quit" | "exit" => Command::Quit,
        other => return Err(format!("unknown command {other:?}; type help")),
    };
    Ok(Some(command))
}

/// zkCli's one-line message for an error of a command on `path`.
pub fn describe_error(path: &str, error: &Error) -> String {
    match error.keeper().map(|e| e.error) {
        Some(ErrorCode::NoNode) => format!("Node does not exist: {path}"),
        Some(ErrorCode::NodeExists) => format!("Node already exists: {path}"),
        Some(ErrorCode::BadVersion) => format!("version No is not valid : {path}"),
        Some(ErrorCode::NotEmpty) => format!("Node not empty: {path}"),
        Some(ErrorCode::NoChildrenForEphemerals) => {
            format!("Ephemerals cannot have children: {path}")
        }
        Some(ErrorCode::SessionExpired) => "Session expired".to_string(),
        _ if error.is_indeterminate() => {
            format!("Error (outcome unknown, the change may have happened): {error}")
        }
        _ => format!("Error: {error}"),
    }
}

/// Runs one command, printing its output; `Err` holds the one-line error message.
pub async fn run(session: &Session, command: &Command) -> Result<(), String> {
    match command {
        Command::Create { path, data, mode } => {
            let created = session
                .create(path, data, *mode)
                .await
                .map_err(|e| describe_error(path, &e))?;
            println!("Created {created}");
        }
        Command::Get { path, watch } => {
            let (data, stat) = session
                .get_data(path, *watch)
                .await
                .map_err(|e| describe_error(path, &e))?;
            println!("{data}");
            print!("{}", format_stat(&stat));
        }
        Command::Set {
            path,
            data,
            version,
            show_stat,
        } => {
            let stat = session
                .set_data(path, data, *version)
                .await
                .map_err(|e| describe_error(path, &e))?;
            if *show_stat {
                print!("{}", format_stat(&stat));
            }
        }
        Command::Delete { path, version } => {
            session
                .delete(path, *version)
                .await
                .map_err(|e| describe_error(path, &e))?;
        }
        Command::Ls {
            path,
            watch,
            show_stat,
        } => {
            let (children, stat) = session
                .get_children_with_stat(path, *watch)
                .await
                .map_err(|e| describe_error(path, &e))?;
            println!("[{}]", children.join(", "));
            if *show_stat {
                print!("{}", format_stat(&stat));
            }
        }
        Command::Stat { path, watch } => {
            match session
                .exists(path, *watch)
                .await
                .map_err(|e| describe_error(path, &e))?
            {
                Some(stat) => print!("{}", format_stat(&stat)),
                None => return Err(format!("Node does not exist: {path}")),
            }
        }
        Command::Sync { path } => {
            session
                .sync(path)
                .await
                .map_err(|e| describe_error(path, &e))?;
            println!("Sync is OK");
        }
        Command::Watch { path } => {
            let exists = session
                .exists(path, true)
                .await
                .map_err(|e| describe_error(path, &e))?;
            if exists.is_some() {
                // A child watch as well, so that `watch /election` shows contenders coming and
                // going. Ephemeral nodes have no children to watch.
                let _ = session.get_children(path, true).await;
            }
            println!("Watching {path}");
        }
        Command::Help => println!("{HELP}"),
        Command::Quit => {}
    }
    Ok(())
}

/// zkCli's rendering of a session event, or `None` for events it does not show.
pub fn format_event(event: &Event) -> Option<String> {
    let line = match event {
        Event::Watch(w) => {
            let kind = match w.kind {
                EventKind::Created => "NodeCreated",
                EventKind::Deleted => "NodeDeleted",
                EventKind::DataChanged => "NodeDataChanged",
                EventKind::ChildrenChanged => "NodeChildrenChanged",
            };
            format!(
                "WATCHER:: WatchedEvent state:SyncConnected type:{kind} path:{}",
                w.path
            )
        }
        Event::Disconnected => {
            "WATCHER:: WatchedEvent state:Disconnected type:None path:null".to_string()
        }
        Event::Expired => "WATCHER:: WatchedEvent state:Expired type:None path:null".to_string(),
        Event::Closed => return None,
    };
    Some(line)
}

/// A stat block with zkCli's field names (zxids and the owner in hex, times as dates).
pub fn format_stat(stat: &Stat) -> String {
    format!(
        "cZxid = {:#x}\nctime = {}\nmZxid = {:#x}\nmtime = {}\npZxid = {:#x}\ncversion = {}\n\
         dataVersion = {}\nephemeralOwner = {:#x}\ndataLength = {}\nnumChildren = {}\n",
        stat.czxid,
        format_time_ms(stat.ctime),
        stat.mzxid,
        format_time_ms(stat.mtime),
        stat.pzxid,
        stat.cversion,
        stat.version,
        stat.ephemeral_owner,
        stat.data_length,
        stat.num_children,
    )
}

/// Milliseconds since the Unix epoch as `Sat Nov 21 07:41:26 UTC 2026` (Java's Date format).
pub fn format_time_ms(ms: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        year
    )
}

/// Howard Hinnant's days-to-civil-date algorithm (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_group_words() {
        assert_eq!(
            tokenize(r#"create /election "election""#).unwrap(),
            vec!["create", "/election", "election"]
        );
        assert_eq!(
            tokenize(r#"set /a "two words" 3"#).unwrap(),
            vec!["set", "/a", "two words", "3"]
        );
        assert_eq!(tokenize("set /a ''").unwrap(), vec!["set", "/a", ""]);
        assert_eq!(tokenize(r#"x "a\"b""#).unwrap(), vec!["x", "a\"b"]);
        assert!(tokenize(r#"create /a "open"#).is_err());
    }

    #[test]
    fn create_flags_choose_the_mode() {
        let parsed = parse("create -e -s /election/leader_ node1").unwrap();
        assert_eq!(
            parsed,
            Some(Command::Create {
                path: "/election/leader_".into(),
                data: "node1".into(),
                mode: CreateMode::EphemeralSequential
            })
        );
        let combined = parse("create -es /e/x").unwrap();
        assert!(matches!(
            combined,
            Some(Command::Create {
                mode: CreateMode::EphemeralSequential,
                ..
            })
        ));
        assert!(parse("create -c -e /x").is_err());
        assert!(parse("create").is_err());
        assert!(parse("create -q /x").is_err());
    }

    #[test]
    fn versions_come_positional_or_with_v() {
        assert_eq!(
            parse("set /a b 3").unwrap(),
            Some(Command::Set {
                path: "/a".into(),
                data: "b".into(),
                version: 3,
                show_stat: false
            })
        );
        assert_eq!(
            parse("delete -v 2 /a").unwrap(),
            Some(Command::Delete {
                path: "/a".into(),
                version: 2
            })
        );
        assert_eq!(
            parse("set /a -1").unwrap(),
            Some(Command::Set {
                path: "/a".into(),
                data: "-1".into(),
                version: ANY_VERSION,
                show_stat: false
            })
        );
        assert!(parse("delete /a x").is_err());
        assert_eq!(parse("   ").unwrap(), None);
        assert_eq!(parse("# comment").unwrap(), None);
        assert!(parse("frobnicate /a").is_err());
    }

    #[test]
    fn times_render_as_java_dates() {
        assert_eq!(format_time_ms(0), "Thu Jan 01 00:00:00 UTC 1970");
        // 2026-11-21T07:41:26Z
        assert_eq!(
            format_time_ms(1_795_246_886_000),
            "Sat Nov 21 07:41:26 UTC 2026"
        );
        assert_eq!(
            format_time_ms(951_782_400_000),
            "Tue Feb 29 00:00:00 UTC 2000"
        );
    }
}
