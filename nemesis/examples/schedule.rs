//! Prints the fault schedule a seed gives: `cargo run -p nemesis --example schedule -- SEED
//! FAULTS NODES SECONDS`, e.g. `-- 7 partition,kill,pause 5 60`.

use nemesis::{FaultKind, Pacing, Schedule};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or(default.to_string());
    let parsed = (|| -> Result<Schedule, String> {
        let seed: u64 = arg(0, "1").parse().map_err(|e| format!("bad seed: {e}"))?;
        let faults =
            FaultKind::parse_set(&arg(1, "partition,kill,pause")).map_err(|e| e.to_string())?;
        let nodes: u64 = arg(2, "5")
            .parse()
            .map_err(|e| format!("bad node count: {e}"))?;
        let seconds: u64 = arg(3, "60")
            .parse()
            .map_err(|e| format!("bad seconds: {e}"))?;
        let ids: Vec<u64> = (1..=nodes).collect();
        Schedule::generate(seed, &faults, &ids, seconds * 1000, Pacing::default())
            .map_err(|e| e.to_string())
    })();
    match parsed {
        Ok(schedule) => println!("{}", schedule.to_json()),
        Err(e) => {
            eprintln!("schedule: {e}");
            std::process::exit(2);
        }
    }
}
