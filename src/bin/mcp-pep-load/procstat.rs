//! CPU time and resident memory of another process, from /proc (Linux): the proxy's cost
//! per request, measured over exactly the measurement window.

/// utime + stime in seconds, and VmRSS in KiB.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub cpu_s: f64,
    pub rss_kib: u64,
}

/// Clock ticks per second of /proc/PID/stat (USER_HZ: 100 on every Linux ABI in use).
const TICKS: f64 = 100.0;

/// utime and stime (fields 14 and 15) of a /proc/PID/stat line, in ticks. The command
/// name (field 2) may hold spaces and parentheses, so fields count from the last `)`.
pub fn parse_stat(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 → index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS of a /proc/PID/status text, in KiB.
pub fn parse_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub fn sample(pid: u32) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Sample { cpu_s: parse_stat(&stat)? as f64 / TICKS, rss_kib: parse_rss(&status)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat = "4242 (mcp pep) (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 1500 250 0 0 20 0 3 0 99 123 456";
        assert_eq!(parse_stat(stat), Some(1750));
        assert_eq!(parse_stat("4242 (short) S 1"), None);
        let status = "Name:\tmcp-pep\nVmPeak:\t  99999 kB\nVmRSS:\t   18236 kB\nThreads:\t3\n";
        assert_eq!(parse_rss(status), Some(18236));
        assert_eq!(parse_rss("Name:\tx\n"), None);
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).expect("own /proc entry");
        assert!(s.rss_kib > 1000, "{s:?}");
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < std::time::Duration::from_millis(150) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let later = sample(std::process::id()).expect("own /proc entry");
        assert!(later.cpu_s > s.cpu_s, "{s:?} then {later:?}");
    }
}
