//! Write-token resolution on the hot path: an in-memory snapshot of every token,
//! reloaded when the key store's generation changes (so `anonstats keys` works while the
//! collector runs) and on a miss (so a new token works at once).

use crate::privacy::Policy;
use crate::store::{KeyStore, PrivacyMode, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A miss reloads at most this often, so unknown tokens cannot hammer the store.
const MISS_RELOAD_INTERVAL: Duration = Duration::from_millis(50);

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
    tokens: HashMap<String, Resolved>,
}

pub struct KeyCache {
    store: Arc<dyn KeyStore>,
    snapshot: RwLock<Arc<Snapshot>>,
    last_reload: Mutex<Instant>,
}

impl KeyCache {
    pub fn load(store: Arc<dyn KeyStore>) -> Result<Self, StoreError> {
        let cache = KeyCache {
            store,
            snapshot: RwLock::new(Arc::default()),
            last_reload: Mutex::new(Instant::now()),
        };
        cache.reload()?;
        Ok(cache)
    }

    pub fn resolve(&self, token: &str) -> Resolved {
        if let Some(found) = self.current().tokens.get(token) {
            return found.clone();
        }
        let due = {
            let mut last = self.last_reload.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.elapsed() >= MISS_RELOAD_INTERVAL;
            if due {
                *last = Instant::now();
            }
            due
        };
        if due {
            if let Err(e) = self.reload() {
                tracing::warn!(error = %e, "cannot reload keys");
            }
        }
        self.current()
            .tokens
            .get(token)
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
            tokens.insert(key.token, entry);
        }
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Snapshot { generation, tokens });
        Ok(())
    }
}
