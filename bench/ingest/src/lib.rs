//! Request bodies for the ingest benchmark: agent events shaped as `anonstats-client`
//! sends them, from a pool of simulated machines, each with a fresh v7 uuid.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// What one request carries.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// One event object with `api_key` at the top level (`/e/`, `/capture/`).
    Single,
    /// `{"api_key", "batch": [...]}` with this many events (`/batch/`).
    Batch(usize),
}

/// Event names and how often each is sent, out of 100.
const EVENTS: &[(&str, u32)] = &[
    ("START", 55),
    ("EXIT", 35),
    ("CLOUD_CONNECT_FAIL", 6),
    ("FATAL", 4),
];

const OSES: &[[&str; 5]] = &[
    // name, id, id_like, version, version_id
    ["Debian GNU/Linux", "debian", "", "12 (bookworm)", "12"],
    [
        "Ubuntu",
        "ubuntu",
        "debian",
        "22.04.4 LTS (Jammy Jellyfish)",
        "22.04",
    ],
    [
        "Ubuntu",
        "ubuntu",
        "debian",
        "24.04 LTS (Noble Numbat)",
        "24.04",
    ],
    [
        "Rocky Linux",
        "rocky",
        "rhel centos fedora",
        "9.3 (Blue Onyx)",
        "9.3",
    ],
    ["Alpine Linux", "alpine", "", "3.19.1", "3.19.1"],
    ["Fedora Linux", "fedora", "", "39 (Server Edition)", "39"],
];
const KERNELS: &[&str] = &[
    "6.1.0-18-amd64",
    "5.15.0-97-generic",
    "6.8.0-31-generic",
    "5.14.0-362.18.1.el9_3.x86_64",
    "6.6.14-0-lts",
];
const VIRT: &[(&str, &str)] = &[
    ("none", "none"),
    ("kvm", "dmi"),
    ("amazon", "dmi"),
    ("microsoft", "cpuid"),
    ("vmware", "dmi"),
];
const CONTAINERS: &[(&str, &str)] = &[
    ("none", "none"),
    ("docker", "dockerenv"),
    ("lxc", "/run/systemd/container"),
];
const VERSIONS: &[&str] = &[
    "v1.44.3",
    "v1.45.0",
    "v1.45.2",
    "v1.45.0-112-nightly",
    "v2.0.0-rc1",
];
const INSTALLS: &[&str] = &[
    "kickstart-static",
    "binpkg-deb",
    "binpkg-rpm",
    "docker",
    "custom",
];
const RAM: &[&str] = &["2 GiB", "4 GiB", "8 GiB", "16 GiB", "32 GiB", "64 GiB"];
const DISK: &[&str] = &["32 GiB", "128 GiB", "256 GiB", "512 GiB", "1 TiB", "4 TiB"];
const CPUS: &[&str] = &["1", "2", "4", "8", "16", "32", "64"];

/// Builds request bodies. Each event is a pre-rendered head (everything before the
/// timestamp) for one machine and one event name; only the time and uuid are new.
pub struct Generator {
    token: String,
    mode: Mode,
    /// `heads[machine * EVENTS.len() + kind]`
    heads: Vec<String>,
    machines: usize,
    /// Each body gets a token no collector knows, as a flood of guesses would.
    random_tokens: bool,
}

impl Generator {
    pub fn new(token: &str, machines: usize, mode: Mode) -> Generator {
        let machines = machines.max(1);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut heads = Vec::with_capacity(machines * EVENTS.len());
        for _ in 0..machines {
            let machine = uuid::Uuid::from_u128(rng.u128(..)).hyphenated().to_string();
            let os = OSES[rng.usize(..OSES.len())];
            let kernel = KERNELS[rng.usize(..KERNELS.len())];
            let virt = VIRT[rng.usize(..VIRT.len())];
            let container = CONTAINERS[rng.usize(..CONTAINERS.len())];
            let version = VERSIONS[rng.usize(..VERSIONS.len())];
            let channel = if version.contains("nightly") {
                "nightly"
            } else {
                "stable"
            };
            let install = INSTALLS[rng.usize(..INSTALLS.len())];
            let k8s = if rng.u8(..10) == 0 { "true" } else { "false" };
            let (ram, disk, cpus) = (
                RAM[rng.usize(..RAM.len())],
                DISK[rng.usize(..DISK.len())],
                CPUS[rng.usize(..CPUS.len())],
            );
            for (event, _) in EVENTS {
                let (result, data) = match *event {
                    "FATAL" => ("", "214@daemon/main.c:netdata_main/12"),
                    "CLOUD_CONNECT_FAIL" => ("", "ECONNREFUSED"),
                    _ => ("", ""),
                };
                let mut h = String::with_capacity(768);
                let _ = write!(
                    h,
                    concat!(
                        r#""distinct_id":"{machine}","event":"{event}","properties":{{"#,
                        r#""$current_url":"agent backend","$host":"agent.anonstats.invalid","#,
                        r#""$ip":"127.0.0.1","$pathname":"anonstats-agent","#,
                        r#""action":"{event}","action_data":"{data}","action_result":"{result}","#,
                        r#""host_is_k8s_node":"{k8s}","#,
                        r#""host_os_id":"{os_id}","#,
                        r#""host_os_id_like":"{os_like}","host_os_name":"{os_name}","#,
                        r#""host_os_version_id":"{os_version_id}","#,
                        r#""install_type":"{install}","product_name":"netdata","#,
                        r#""product_version":"{version}","release_channel":"{channel}","#,
                        r#""system_architecture":"x86_64","system_container":"{container}","#,
                        r#""#,
                        r#""system_cpu_logical_cpu_count":"{cpus}","system_kernel_name":"Linux","#,
                        r#""system_kernel_version":"{kernel}","system_total_disk_size":"{disk}","#,
                        r#""system_total_ram":"{ram}","#,
                        r#""system_virtualization":"{virt}"}},"timestamp":""#
                    ),
                    machine = machine,
                    event = event,
                    data = data,
                    result = result,
                    k8s = k8s,
                    os_id = os[1],
                    os_like = os[2],
                    os_name = os[0],
                    os_version_id = os[4],
                    install = install,
                    version = version,
                    channel = channel,
                    container = container.0,
                    cpus = cpus,
                    kernel = kernel,
                    disk = disk,
                    ram = ram,
                    virt = virt.0,
                );
                heads.push(h);
            }
        }
        Generator {
            token: token.to_string(),
            mode,
            heads,
            machines,
            random_tokens: false,
        }
    }

    /// Sends a fresh unknown token in every body instead of the given one.
    pub fn with_random_tokens(mut self) -> Generator {
        self.random_tokens = true;
        self
    }

    /// A request body and the number of events in it.
    pub fn body(&self, rng: &mut fastrand::Rng) -> (Vec<u8>, usize) {
        let now = SystemTime::now();
        let ts = rfc3339_ms(now);
        let mut out = String::with_capacity(match self.mode {
            Mode::Single => 900,
            Mode::Batch(n) => 64 + n * 850,
        });
        let guessed;
        let token = if self.random_tokens {
            guessed = format!("aw_{:032x}", rng.u128(..));
            &guessed
        } else {
            &self.token
        };
        match self.mode {
            Mode::Single => {
                let _ = write!(out, r#"{{"api_key":"{}","#, token);
                self.event(&mut out, rng, &ts);
                (out.into_bytes(), 1)
            }
            Mode::Batch(n) => {
                let _ = write!(out, r#"{{"api_key":"{}","batch":["#, token);
                for i in 0..n {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push('{');
                    self.event(&mut out, rng, &ts);
                }
                out.push_str("]}");
                (out.into_bytes(), n)
            }
        }
    }

    /// Appends one event after its opening brace.
    fn event(&self, out: &mut String, rng: &mut fastrand::Rng, ts: &str) {
        let roll = rng.u32(..100);
        let mut acc = 0;
        let kind = EVENTS
            .iter()
            .position(|(_, w)| {
                acc += w;
                roll < acc
            })
            .unwrap_or(0);
        let machine = rng.usize(..self.machines);
        out.push_str(&self.heads[machine * EVENTS.len() + kind]);
        out.push_str(ts);
        out.push_str(r#"","uuid":""#);
        let mut buf = uuid::Uuid::encode_buffer();
        out.push_str(uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf));
        out.push_str("\"}");
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC.
pub fn rfc3339_ms(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339_ms(t), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn bodies_are_valid_json_of_the_right_shape() {
        let mut rng = fastrand::Rng::with_seed(1);
        let single = Generator::new("tok", 10, Mode::Single);
        let (b, n) = single.body(&mut rng);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!((n, v["api_key"].as_str()), (1, Some("tok")));
        assert_eq!(v["properties"]["product_name"], "netdata");
        assert!((600..900).contains(&b.len()), "{} bytes", b.len());
        println!("single event body: {} bytes", b.len());

        let batch = Generator::new("tok", 10, Mode::Batch(100));
        let (b, n) = batch.body(&mut rng);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!((n, v["batch"].as_array().unwrap().len()), (100, 100));
        let uuids: std::collections::HashSet<_> = v["batch"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["uuid"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(uuids.len(), 100);
    }
}
