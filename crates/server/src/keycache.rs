//! Write-token resolution on the hot path: an in-memory snapshot of every token's hash
//! (the store keeps no token whole), reloaded when the key store's generation changes: checked periodically (so a revoked
//! token stops working) and on every miss (so a new token works at once).

use crate::privacy::Policy;
use crate::store::{KeyStore, PrivacyMode, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Checks for new keys that misses cause begin at most this often: a flood of random
/// tokens then costs about a hundred store queries a second however large it is, and a
/// miss still waits for a check begun after it, so a new token works at its first request.
const MISS_CHECK_EVERY: Duration = Duration::from_millis(10);

#[derive(Debug)]
pub struct ProjectEntry {
    pub id: i64,
    pub policy: Policy,
}

#[derive(Debug, Clone)]
pub enum Resolved {
    Project(Arc<ProjectEntry>),
    Revoked,
    Unknown,
}

#[derive(Default)]
struct Snapshot {
    generation: i64,
    /// By the token's SHA-256.
    tokens: HashMap<Vec<u8>, Resolved>,
}

pub struct KeyCache {
    store: Arc<dyn KeyStore>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// When the last check for new keys after a miss began; one check runs at a time.
    miss_check: tokio::sync::Mutex<Option<Instant>>,
}

impl KeyCache {
    pub fn load(store: Arc<dyn KeyStore>) -> Result<Self, StoreError> {
        let cache = KeyCache {
            store,
            snapshot: RwLock::new(Arc::default()),
            miss_check: tokio::sync::Mutex::new(None),
        };
        cache.reload()?;
        Ok(cache)
    }

    /// Finds a write token. A miss may be a token created since the last load, so the
    /// store is asked whether keys changed: on the blocking pool, since on ClickHouse
    /// that is an HTTP call, and once for every miss that was waiting when it began, at
    /// most every [`MISS_CHECK_EVERY`], so that a flood of random tokens costs one query
    /// at a time, and few of them, however large it is.
    pub async fn resolve(self: &Arc<Self>, token: &str) -> Resolved {
        let token = crate::tokens::hash_secret(token);
        if let Some(found) = self.current().tokens.get(&token) {
            return found.clone();
        }
        let missed = Instant::now();
        let mut last = self.miss_check.lock().await;
        if last.is_none_or(|began| began < missed) {
            if let Some(began) = *last {
                tokio::time::sleep_until((began + MISS_CHECK_EVERY).into()).await;
            }
            *last = Some(Instant::now());
            let cache = self.clone();
            match tokio::task::spawn_blocking(move || cache.refresh_if_changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot reload keys"),
                Err(e) => tracing::warn!(error = %e, "the key reload task failed"),
            }
        }
        drop(last);
        self.current()
            .tokens
            .get(&token)
            .cloned()
            .unwrap_or(Resolved::Unknown)
    }

    /// Reloads when any key changed since the last load.
    pub fn refresh_if_changed(&self) -> Result<(), StoreError> {
        if self.store.generation()? != self.current().generation {
            self.reload()?;
        }
        Ok(())
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn reload(&self) -> Result<(), StoreError> {
        let generation = self.store.generation()?;
        let mut projects: HashMap<i64, Arc<ProjectEntry>> = HashMap::new();
        let mut tokens = HashMap::new();
        for key in self.store.write_keys()? {
            let entry = if key.revoked {
                Resolved::Revoked
            } else {
                let p = &key.project;
                let project = projects.entry(p.id).or_insert_with(|| {
                    Arc::new(ProjectEntry {
                        id: p.id,
                        policy: Policy {
                            allowlist: match &p.privacy {
                                PrivacyMode::Denylist => None,
                                PrivacyMode::Allowlist(names) => {
                                    Some(names.iter().cloned().collect())
                                }
                            },
                        },
                    })
                });
                Resolved::Project(project.clone())
            };
            tokens.insert(key.hash, entry);
        }
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Snapshot { generation, tokens });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{LastAdmin, NewSecret, Project, Role, SecretKey, WriteKey};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The embedded store with a fault: asking for the generation stalls until the test
    /// lets it go, as a store that cannot be reached does.
    struct Stalling {
        inner: SqliteStore,
        stalled: AtomicBool,
        go: Mutex<std::sync::mpsc::Receiver<()>>,
        asked: AtomicUsize,
    }

    use std::sync::atomic::AtomicBool;

    impl KeyStore for Stalling {
        fn generation(&self) -> Result<i64, StoreError> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            if self.stalled.load(Ordering::SeqCst) {
                let _ = self.go.lock().unwrap().recv();
            }
            self.inner.generation()
        }
        fn projects(&self) -> Result<Vec<Project>, StoreError> {
            self.inner.projects()
        }
        fn write_keys(&self) -> Result<Vec<WriteKey>, StoreError> {
            self.inner.write_keys()
        }
        fn secret_keys(&self) -> Result<Vec<SecretKey>, StoreError> {
            self.inner.secret_keys()
        }
        fn create_project(&self, name: &str) -> Result<(Project, String), StoreError> {
            self.inner.create_project(name)
        }
        fn create_write_key(&self, project: &str) -> Result<String, StoreError> {
            self.inner.create_write_key(project)
        }
        fn create_secret(&self, role: Role, new: &NewSecret) -> Result<String, StoreError> {
            self.inner.create_secret(role, new)
        }
        fn secret_of(&self, token: &str) -> Result<Option<SecretKey>, StoreError> {
            self.inner.secret_of(token)
        }
        fn revoke(&self, what: &str, last: LastAdmin) -> Result<String, StoreError> {
            self.inner.revoke(what, last)
        }
        fn set_privacy(&self, project: &str, mode: PrivacyMode) -> Result<(), StoreError> {
            self.inner.set_privacy(project, mode)
        }
        fn property_names(&self, project_id: i64) -> Result<Vec<String>, StoreError> {
            self.inner.property_names(project_id)
        }
    }

    #[test]
    fn misses_never_hold_a_worker_and_a_flood_of_them_asks_the_store_once_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let (go, gate) = std::sync::mpsc::channel();
        let store = Arc::new(Stalling {
            inner: SqliteStore::open(dir.path()).unwrap(),
            stalled: AtomicBool::new(false),
            go: Mutex::new(gate),
            asked: AtomicUsize::new(0),
        });
        let (_, token) = store.create_project("p").unwrap();
        let cache = Arc::new(KeyCache::load(store.clone()).unwrap());
        store.stalled.store(true, Ordering::SeqCst);
        let asked_before = store.asked.load(Ordering::SeqCst);

        // One worker thread: a miss that asked the store on it would stall everything.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        let store_in = store.clone();
        let watched = std::thread::spawn(move || {
            let store = store_in;
            rt.block_on(async {
                let misses: Vec<_> = (0..50)
                    .map(|i| {
                        let cache = cache.clone();
                        tokio::spawn(async move { cache.resolve(&format!("aw_random{i}")).await })
                    })
                    .collect();
                // The worker still serves others while the store stalls.
                let known = cache.resolve(&token).await;
                assert!(matches!(known, Resolved::Project(_)));
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                store.stalled.store(false, Ordering::SeqCst);
                go.send(()).unwrap();
                for m in misses {
                    assert!(matches!(m.await.unwrap(), Resolved::Unknown));
                }
            });
            done.send(()).unwrap();
        });
        if finished
            .recv_timeout(std::time::Duration::from_secs(30))
            .is_err()
        {
            panic!("a token-cache miss blocked the worker thread while the key store stalled");
        }
        watched.join().unwrap();
        // 50 misses at once share the one check that was under way, plus at most one
        // begun after it, instead of 50 queries.
        let asked = store.asked.load(Ordering::SeqCst) - asked_before;
        assert!(asked <= 2, "{asked} queries for 50 misses");
    }
}
