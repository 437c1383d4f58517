//! Write-token resolution on the hot path: an in-memory snapshot of every token,
//! reloaded when the key store's generation changes: checked periodically (so a revoked
//! token stops working) and on every miss (so a new token works at once).

use crate::privacy::Policy;
use crate::store::{KeyStore, PrivacyMode, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

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
}

impl KeyCache {
    pub fn load(store: Arc<dyn KeyStore>) -> Result<Self, StoreError> {
        let cache = KeyCache {
            store,
            snapshot: RwLock::new(Arc::default()),
        };
        cache.reload()?;
        Ok(cache)
    }

    pub fn resolve(&self, token: &str) -> Resolved {
        if let Some(found) = self.current().tokens.get(token) {
            return found.clone();
        }
        // A token created since the last load: the generation says whether to reload.
        if let Err(e) = self.refresh_if_changed() {
            tracing::warn!(error = %e, "cannot reload keys");
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
