//! `anonstats gen`: realistic agent events written straight into the store through the
//! collector's own writer (group commit, rollups in the same transaction), for demos,
//! dashboards and load tests. Deterministic: the same `--seed` and `--end` give the same
//! events.

// Declared from main.rs with a #[path], so submodule paths are spelled out.
#[path = "gen/model.rs"]
mod model;
#[path = "gen/rng.rs"]
mod rng;
#[path = "gen/systems.rs"]
mod systems;

use crate::export::{parse_time, progress_bar};
use anonstats_server::metrics::Metrics;
use anonstats_server::rollup;
use anonstats_server::store::sqlite::SqliteStore;
use anonstats_server::store::{EventStore, Inserted, KeyStore, NewEvent, StoreError};
use anyhow::{Context, bail};
use model::{DAY_MS, Machine, Population, event_part};
use rng::Rng;
use serde_json::Value;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// Events handed to the writer at once.
const BATCH: usize = 10_000;
/// Batches waiting for the writer while the next one is generated.
const IN_FLIGHT: usize = 4;

#[derive(clap::Args)]
pub struct GenArgs {
    /// serve's TOML config file: its `data-dir` (and `store`) settings apply here too,
    /// under flags and environment variables.
    #[arg(long, env = "ANONSTATS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded database, created when absent (gen and serve are the
    /// only commands that create a store; a new one's tokens go to initial-tokens.txt
    /// there).
    #[arg(long, env = "ANONSTATS_DATA_DIR", default_value = "./anonstats-data")]
    data_dir: PathBuf,
    /// How many events to write.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// How many machines send them (each sends at least one).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=2_000_000))]
    machines: u64,
    /// Spread the events over this many days before --end.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// The project to write into (created when absent).
    #[arg(long, default_value = "default")]
    project: String,
    /// Seed of the random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// End of the time window (RFC 3339 or a date); default: the start of this hour.
    #[arg(long)]
    end: Option<String>,
    /// The product_name of the events.
    #[arg(long, default_value = "demo-agent")]
    product: String,
}

pub fn run(args: GenArgs) -> anyhow::Result<ExitCode> {
    if args.events < args.machines {
        bail!(
            "--events {} is less than --machines {}: every machine sends at least one event; raise --events or lower --machines",
            args.events,
            args.machines
        );
    }
    let end_ms = match &args.end {
        Some(v) => parse_time("end", v)?,
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the system clock is before 1970")?
                .as_millis() as i64;
            now - now.rem_euclid(3_600_000)
        }
    };
    let start_ms = end_ms - i64::from(args.days) * DAY_MS;
    // The same times the collector accepts, so that both stores hold them alike.
    if !anonstats_wire::timestamp_in_range(start_ms)
        || !anonstats_wire::timestamp_in_range(end_ms - 1)
    {
        bail!(
            "--end {} and --days {} give events from {} to {}, outside the accepted time range, {} to {}",
            args.end.as_deref().unwrap_or("(now)"),
            args.days,
            anonstats_wire::format_rfc3339_ms(start_ms),
            anonstats_wire::format_rfc3339_ms(end_ms),
            anonstats_wire::format_rfc3339_ms(anonstats_wire::MIN_TIMESTAMP_MS),
            anonstats_wire::format_rfc3339_ms(anonstats_wire::MAX_TIMESTAMP_MS),
        );
    }
    let store = Arc::new(
        SqliteStore::open(&args.data_dir)
            .with_context(|| format!("cannot open the store in {}", args.data_dir.display()))?,
    );
    store.lock()?;
    let project_id = ensure_project(&store, &args.project)?;

    let begun = Instant::now();
    let mut rng = Rng::new(args.seed);
    let pop = Population::new(
        &mut rng.fork(),
        args.machines,
        start_ms,
        end_ms,
        &args.product,
    );
    let mut stream = Stream::new(&pop, rng.fork(), args.events, start_ms, end_ms, project_id);

    store.start_writer(Arc::new(Metrics::default()), IN_FLIGHT * 2)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let bar = progress_bar(Some(args.events), "events");
    let mut pending = VecDeque::new();
    let (mut stored, mut duplicates) = (0u64, 0u64);
    type Pending = tokio::task::JoinHandle<Result<Inserted, StoreError>>;
    let mut wait = |pending: &mut VecDeque<Pending>| -> anyhow::Result<()> {
        if let Some(handle) = pending.pop_front() {
            let inserted = runtime
                .block_on(handle)
                .context("the insert task failed")?
                .context("cannot store the generated events")?;
            stored += inserted.stored as u64;
            duplicates += inserted.duplicates as u64;
            bar.inc(inserted.stored as u64 + inserted.duplicates as u64);
        }
        Ok(())
    };
    loop {
        let batch = stream.batch(BATCH);
        if batch.is_empty() {
            break;
        }
        let s = store.clone();
        pending.push_back(runtime.spawn(async move { s.insert(batch).await }));
        if pending.len() >= IN_FLIGHT {
            wait(&mut pending)?;
        }
    }
    while !pending.is_empty() {
        wait(&mut pending)?;
    }
    bar.finish_and_clear();
    store.close();
    let secs = begun.elapsed().as_secs_f64();
    // The collector would compact these in the background; doing it now means the
    // first questions asked of the new data set are already fast.
    let compacting = std::time::Instant::now();
    let spans = store.compact().context("cannot compact the rollups")?;
    println!(
        "generated {} events over {} machines in project {:?}, {} to {}",
        args.events,
        args.machines,
        args.project,
        anonstats_wire::format_rfc3339_ms(start_ms),
        anonstats_wire::format_rfc3339_ms(end_ms)
    );
    if duplicates > 0 {
        println!("{duplicates} were already stored (same seed and end as an earlier run)");
    }
    println!(
        "stored {stored} in {secs:.1} s ({:.0} events/s)",
        args.events as f64 / secs.max(1e-9)
    );
    println!(
        "compacted {spans} rollup spans in {:.1} s",
        compacting.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// The project's id; creates it when absent. On an empty store it also creates an
/// admin token, as the collector's first start does, and shows it once.
fn ensure_project(store: &SqliteStore, name: &str) -> anyhow::Result<i64> {
    let projects = store.projects()?;
    if let Some(p) = projects.iter().find(|p| p.name == name) {
        return Ok(p.id);
    }
    let (project, write) = store.create_project(name)?;
    if projects.is_empty() {
        let dir = store.path().parent().unwrap_or(std::path::Path::new("."));
        crate::initial_tokens::hand_over(store, dir, &project.name, &write)?;
    } else {
        println!("created project {:?}", project.name);
        println!("write token: {write}");
    }
    Ok(project.id)
}

/// The events in time order: one first event per machine (when it is installed, or
/// early in the window for machines that were already running) merged with the rest
/// spread evenly over the window.
struct Stream<'a> {
    pop: &'a Population,
    rng: Rng,
    project_id: i64,
    /// (time, machine) of each machine's first event, sorted by time.
    firsts: Vec<(i64, usize)>,
    next_first: usize,
    rest: u64,
    next_rest: u64,
    start_ms: i64,
    span_ms: f64,
}

impl<'a> Stream<'a> {
    fn new(
        pop: &'a Population,
        mut rng: Rng,
        events: u64,
        start_ms: i64,
        end_ms: i64,
        project_id: i64,
    ) -> Self {
        let mut firsts: Vec<(i64, usize)> = pop
            .machines
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let t = if m.first_ms > start_ms {
                    m.first_ms
                } else {
                    let early = (2 * DAY_MS).min(m.last_ms - start_ms).max(1);
                    start_ms + rng.below(early as u64) as i64
                };
                (t, i)
            })
            .collect();
        firsts.sort_unstable();
        Stream {
            pop,
            rng,
            project_id,
            rest: events - firsts.len() as u64,
            firsts,
            next_first: 0,
            next_rest: 0,
            start_ms,
            span_ms: (end_ms - start_ms) as f64,
        }
    }

    fn batch(&mut self, n: usize) -> Vec<NewEvent> {
        let pop = self.pop;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let rest_t = (self.next_rest < self.rest).then(|| {
                self.start_ms
                    + ((self.next_rest as f64 + 0.5) * self.span_ms / self.rest as f64) as i64
            });
            let first = self.firsts.get(self.next_first).copied();
            let event = match (first, rest_t) {
                (Some((t, m)), r) if r.is_none_or(|r| t <= r) => {
                    self.next_first += 1;
                    self.event(&pop.machines[m], "START", t)
                }
                (_, Some(t)) => {
                    self.next_rest += 1;
                    let m = &pop.machines[pop.pick(&mut self.rng, t)];
                    let name = self.name(m);
                    self.event(m, name, t)
                }
                _ => break,
            };
            out.push(event);
        }
        out
    }

    fn name(&mut self, m: &Machine) -> &'static str {
        let weights = [
            ("START", 44.0),
            ("EXIT", 40.0),
            ("FATAL", 1.5 * m.fragility),
            ("CLOUD_CONNECT_FAIL", 6.0),
            ("CLOUD_UNAVAILABLE", 3.0),
            ("INCOMPLETE_SHUTDOWN", 1.5),
            ("CLOUD_BUILD_FAIL", 0.3),
        ];
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        let mut x = self.rng.f64() * total;
        for (name, w) in weights {
            if x < w {
                return name;
            }
            x -= w;
        }
        "START"
    }

    fn event(&mut self, m: &Machine, name: &str, t_ms: i64) -> NewEvent {
        let version = self.pop.version(m, t_ms);
        let own = event_part(name, &version, &mut self.rng, self.pop);
        let (properties, dims) = assemble(name, own, m);
        let uuid = uuid::Builder::from_unix_timestamp_millis(t_ms.max(0) as u64, &self.rng.bytes())
            .into_uuid();
        NewEvent {
            project_id: self.project_id,
            uuid,
            event: name.to_string(),
            distinct_id: m.distinct_id.clone(),
            timestamp_ms: t_ms,
            received_ms: t_ms + self.rng.range(20, 1500),
            properties,
            dims,
        }
    }
}

/// The stored properties text and rollup dims of an event: its own properties joined
/// with the machine's stable ones. Equal to what ingest computes from the whole object
/// (see the test), without building it for every event.
fn assemble(
    name: &str,
    own: serde_json::Map<String, Value>,
    m: &Machine,
) -> (String, rollup::Dims) {
    let mut dims = rollup::dims(name, &own);
    dims.extend(&m.dims);
    let own = Value::Object(own).to_string();
    let mut text = String::with_capacity(own.len() + m.json.len() + 1);
    text.push_str(&own[..own.len() - 1]);
    text.push(',');
    text.push_str(&m.json);
    text.push('}');
    (text, dims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anonstats_server::privacy::{Policy, apply};

    #[test]
    fn events_equal_what_ingest_would_store_and_roll_up() {
        let pop = Population::new(&mut Rng::new(3), 40, 0, 30 * DAY_MS, "demo");
        let mut stream = Stream::new(&pop, Rng::new(4), 4000, 0, 30 * DAY_MS, 1);
        let events = stream.batch(10_000);
        assert_eq!(events.len(), 4000);
        let machines: std::collections::HashSet<_> =
            events.iter().map(|e| &e.distinct_id).collect();
        assert_eq!(machines.len(), 40);
        assert!(
            events
                .windows(2)
                .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms)
        );
        let mut names = std::collections::HashSet::new();
        for e in &events {
            names.insert(e.event.clone());
            let mut props = anonstats_wire::Properties::parse(&e.properties).unwrap();
            let before = props.clone();
            apply(
                &mut props,
                &Policy::default(),
                &mut anonstats_server::privacy::Edits::default(),
            );
            assert_eq!(
                props, before,
                "the privacy filter would change {}",
                e.properties
            );
            let want = rollup::dims(&e.event, &props);
            let mut want: Vec<(&str, &str)> = want.iter().collect();
            let mut got: Vec<(&str, &str)> = e.dims.iter().collect();
            want.sort();
            got.sort();
            assert_eq!(got, want);
        }
        for n in ["START", "EXIT", "FATAL", "CLOUD_CONNECT_FAIL"] {
            assert!(names.contains(n), "{n} missing");
        }
        let again = Stream::new(&pop, Rng::new(4), 4000, 0, 30 * DAY_MS, 1).batch(10);
        assert_eq!(again[9].uuid, events[9].uuid);
    }
}
