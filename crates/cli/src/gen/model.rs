//! The population behind generated events: machines that join and leave over the
//! window, releases that machines adopt with a delay, and crash sites of which a few are
//! hot and most are rare.

use super::rng::Rng;
use super::systems;
use anonstats_client::event::{FatalSite, action_properties, apply_masks};
use anonstats_server::privacy::{self, Policy};
use anonstats_server::rollup::Dims;
use anonstats_wire::Properties;
use serde_json::{Map, Value};

pub const DAY_MS: i64 = 86_400_000;

pub struct Release {
    pub version: String,
    pub at_ms: i64,
}

pub struct Machine {
    pub distinct_id: String,
    /// Stable properties as JSON object members, without the braces.
    pub json: String,
    /// What the stable properties add to the rollups.
    pub dims: Dims,
    pub first_ms: i64,
    /// Exclusive.
    pub last_ms: i64,
    /// Days between a release and this machine running it; `None` never upgrades.
    pub lag_ms: Option<i64>,
    pub nightly: bool,
    /// How likely a crash is on this machine, relative to others.
    pub fragility: f64,
}

pub struct Population {
    pub machines: Vec<Machine>,
    /// Cumulative activity weights of `machines`, to pick busy machines more often.
    cumulative: Vec<f64>,
    pub releases: Vec<Release>,
    pub sites: Vec<(FatalSite, f64)>,
    site_total: f64,
}

const INSTALL_TYPES: &[(&str, u32)] = &[
    ("kickstart-static", 30),
    ("binpkg-deb", 25),
    ("binpkg-rpm", 15),
    ("kickstart-build", 10),
    ("oci", 15),
    ("custom", 5),
];

const THREADS: &[&str] = &[
    "MAIN",
    "DBENGINE",
    "WEB[1]",
    "WEB[2]",
    "HEALTH",
    "ACLK_MAIN",
    "PLUGINSD",
    "STREAM",
];
const MODULES: &[&str] = &[
    "database/engine",
    "web/server",
    "health",
    "streaming",
    "aclk",
    "collectors/proc",
    "libnetdata/buffer",
    "ml",
    "exporting",
    "registry",
];
const VERBS: &[&str] = &[
    "load", "flush", "parse", "lookup", "release", "init", "free", "send", "read", "merge",
];
const NOUNS: &[&str] = &[
    "page", "metric", "chart", "alert", "buffer", "node", "cache", "query", "host", "context",
];

impl Population {
    pub fn new(rng: &mut Rng, machines: u64, start_ms: i64, end_ms: i64, product: &str) -> Self {
        let span = (end_ms - start_ms).max(1);
        let releases = releases(&mut rng.fork(), start_ms, end_ms);
        let sites = crash_sites(&mut rng.fork(), product);
        let site_total = sites.iter().map(|(_, w)| w).sum();
        let mut facts_rng = rng.fork();
        let mut list = Vec::with_capacity(machines as usize);
        let mut cumulative = Vec::with_capacity(machines as usize);
        let mut sum = 0.0;
        for _ in 0..machines {
            let id = uuid::Builder::from_random_bytes(rng.bytes::<16>())
                .into_uuid()
                .to_string();
            let first_ms = if rng.chance(0.6) {
                start_ms
            } else {
                start_ms + rng.below(span as u64) as i64
            };
            let last_ms = if rng.chance(0.12) {
                first_ms + ((end_ms - first_ms) as f64 * rng.f64()) as i64 + 1
            } else {
                end_ms
            };
            let nightly = rng.chance(0.12);
            let lag_ms = if !nightly && rng.chance(0.15) {
                None
            } else {
                let mean_days = if nightly { 0.5 } else { 6.0 };
                Some((rng.exp(mean_days) * DAY_MS as f64) as i64)
            };
            let mut props = systems::facts(&mut facts_rng);
            props.insert("product_name".into(), product.into());
            let channel = if nightly { "nightly" } else { "stable" };
            props.insert("release_channel".into(), channel.into());
            let install = if props["system_container"] == "docker" {
                "oci"
            } else {
                *rng.weighted(INSTALL_TYPES)
            };
            props.insert("install_type".into(), install.into());
            // Old 32-bit ARM boards crash more often than the rest.
            let fragility = if props["system_architecture"] == "armv7l" {
                4.0
            } else {
                rng.exp(1.0)
            };
            let (json, dims) = stable_part(props);
            list.push(Machine {
                distinct_id: id,
                json,
                dims,
                first_ms,
                last_ms,
                lag_ms,
                nightly,
                fragility,
            });
            sum += (rng.normal() * 1.1).exp();
            cumulative.push(sum);
        }
        Population {
            machines: list,
            cumulative,
            releases,
            sites,
            site_total,
        }
    }

    /// A machine that is installed at `t_ms`, busy ones more often than quiet ones.
    pub fn pick(&self, rng: &mut Rng, t_ms: i64) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let mut last = 0;
        for _ in 0..32 {
            let x = rng.f64() * total;
            last = self
                .cumulative
                .partition_point(|c| *c <= x)
                .min(self.machines.len().saturating_sub(1));
            let m = &self.machines[last];
            if m.first_ms <= t_ms && t_ms < m.last_ms {
                break;
            }
        }
        last
    }

    /// The version machine `m` runs at `t_ms`.
    pub fn version(&self, m: &Machine, t_ms: i64) -> String {
        if m.nightly {
            let base = self.releases.iter().rev().find(|r| r.at_ms <= t_ms);
            let (v, since) = match base {
                Some(r) => (r.version.as_str(), (t_ms - r.at_ms) / DAY_MS),
                None => (self.releases[0].version.as_str(), 0),
            };
            return format!("{v}-{}-nightly", since + 1);
        }
        let seen = match m.lag_ms {
            Some(lag) => t_ms - lag,
            None => m.first_ms,
        };
        self.releases
            .iter()
            .rev()
            .find(|r| r.at_ms <= seen)
            .unwrap_or(&self.releases[0])
            .version
            .clone()
    }

    /// A crash site: a few hot ones, then a long tail.
    pub fn site(&self, rng: &mut Rng) -> &FatalSite {
        let mut x = rng.f64() * self.site_total;
        for (site, w) in &self.sites {
            if x < *w {
                return site;
            }
            x -= w;
        }
        &self.sites[self.sites.len() - 1].0
    }
}

/// The stable properties as stored (after the collector's privacy filter) and their dims.
fn stable_part(mut props: Map<String, Value>) -> (String, Dims) {
    apply_masks(&mut props);
    let mut props = Properties::from_map(&props);
    privacy::apply(
        &mut props,
        &Policy::default(),
        &mut privacy::Edits::default(),
    );
    let dims = anonstats_server::rollup::dims("", &props);
    let text = props.into_json();
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or_default()
        .to_string();
    (inner, dims)
}

/// The event's own properties (`action*`, version, crash site, error code).
pub fn event_part(
    name: &str,
    version: &str,
    rng: &mut Rng,
    pop: &Population,
) -> Map<String, Value> {
    let mut m = match name {
        "FATAL" => {
            let mut site = pop.site(rng).clone();
            site.errno = [0, 0, 0, 2, 11, 12, 22][rng.below(7) as usize];
            site.properties()
        }
        "CLOUD_CONNECT_FAIL" => {
            let code = *rng.weighted(&[
                ("504", 30),
                ("502", 15),
                ("503", 12),
                ("429", 8),
                ("401", 6),
                ("ETIMEDOUT", 12),
                ("ECONNREFUSED", 9),
                ("EAI_AGAIN", 8),
            ]);
            let mut m = action_properties(name, Some(code), None);
            m.insert("error_code".into(), code.into());
            m
        }
        _ => action_properties(name, None, None),
    };
    m.insert("product_version".into(), version.into());
    m
}

fn releases(rng: &mut Rng, start_ms: i64, end_ms: i64) -> Vec<Release> {
    let (mut minor, mut patch) = (40 + rng.below(8), 0);
    // One release well before the window, so every machine has a version to run.
    let mut at = start_ms - 45 * DAY_MS;
    let mut out = Vec::new();
    while at < end_ms {
        out.push(Release {
            version: format!("1.{minor}.{patch}"),
            at_ms: at,
        });
        at += rng.range(4 * DAY_MS, 14 * DAY_MS);
        if rng.chance(0.4) {
            minor += 1;
            patch = 0;
        } else {
            patch += 1;
        }
    }
    out
}

fn crash_sites(rng: &mut Rng, product: &str) -> Vec<(FatalSite, f64)> {
    let n = 60;
    (0..n)
        .map(|i| {
            let module = MODULES[rng.below(MODULES.len() as u64) as usize];
            let verb = VERBS[rng.below(VERBS.len() as u64) as usize];
            let noun = NOUNS[rng.below(NOUNS.len() as u64) as usize];
            let leaf = module.rsplit('/').next().unwrap_or(module);
            let site = FatalSite {
                process: product.to_string(),
                thread: THREADS[rng.below(THREADS.len() as u64) as usize].to_string(),
                function: format!("{}_{verb}_{noun}", leaf.replace('-', "_")),
                file: format!("src/{module}/{leaf}_{noun}.c"),
                line: rng.range(40, 3000) as u32,
                errno: 0,
                message: String::new(),
            };
            // Zipf-like: the first few sites take most crashes.
            (site, 1.0 / f64::from(i + 1).powf(1.2))
        })
        .collect()
}
