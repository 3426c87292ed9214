//! Figures kept while the warehouse does not change. Every committed load writes a ledger row in its own
//! transaction, so the ledger's row count and latest finish time name the warehouse's contents ([`Version`]): each
//! request reads them once (one aggregate over a table of one row per load) and a change empties the cache.
//! Writes that bypass the loader (hand-written SQL) are picked up within [`MAX_AGE`].
//!
//! Kept: a summary per filter set, the filter choices, and the figures no filter changes. Whoever asks for one of
//! them while it is being computed waits for that computation instead of repeating it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::DashboardError;
use super::filters::Filters;
use super::queries::{self, FilterOptions, Summary, Unfiltered};

/// The longest a kept figure is served, whatever the ledger says.
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// A warehouse version: the ledger's load count and the latest load's finish time.
pub type Version = (i64, Option<String>);

/// The cache: at most `capacity` summaries, all of one warehouse version.
pub struct Cache {
    capacity: usize,
    inner: Mutex<Inner>,
    /// The computations in progress, by key: who asks for one of them waits for it.
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The flight keys of the filter choices and of the [`Unfiltered`] figures (no filter set's key starts with NUL).
const OPTIONS: &str = "\0options";
const UNFILTERED: &str = "\0unfiltered";

#[derive(Default)]
struct Inner {
    version: Option<Version>,
    summaries: HashMap<String, Entry<Summary>>,
    options: Option<Entry<FilterOptions>>,
    unfiltered: Option<Entry<Unfiltered>>,
    /// Insertion counter: the oldest summary goes first when the cache is full.
    clock: u64,
}

struct Entry<T> {
    value: T,
    at: Instant,
    order: u64,
}

impl<T: Clone> Entry<T> {
    fn new(value: T, order: u64) -> Entry<T> {
        Entry {
            value,
            at: Instant::now(),
            order,
        }
    }

    /// The value, unless it is older than [`MAX_AGE`].
    fn fresh(entry: Option<&Entry<T>>) -> Option<T> {
        entry
            .filter(|e| e.at.elapsed() < MAX_AGE)
            .map(|e| e.value.clone())
    }
}

impl Cache {
    /// A cache of `capacity` summaries; 0 keeps nothing (every request queries).
    pub fn new(capacity: usize) -> Cache {
        Cache {
            capacity,
            inner: Mutex::new(Inner::default()),
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// The warehouse's version now (one query on the ledger), to read every figure of one request at; `None`
    /// without a query when the cache keeps nothing.
    pub async fn current(&self, client: &Client) -> Result<Option<Version>, DashboardError> {
        if self.capacity == 0 {
            return Ok(None);
        }
        queries::data_version(client).await.map(Some)
    }

    /// The ledger's load count of the version the kept summaries belong to (`None` while none is kept).
    pub fn kept_version(&self) -> Option<i64> {
        let inner = self.lock();
        inner
            .version
            .as_ref()
            .filter(|_| !inner.summaries.is_empty())
            .map(|(count, _)| *count)
    }

    /// The summary for `filters` at version `at` (computed when there is no version: the cache is off).
    pub async fn summary(
        &self,
        client: &mut Client,
        at: Option<&Version>,
        filters: &Filters,
    ) -> Result<Summary, DashboardError> {
        let Some(version) = at else {
            return queries::summary(client, filters).await;
        };
        // The table sort only orders rows on the page: one entry serves every sort.
        let unsorted = Filters {
            sort: None,
            ..filters.clone()
        };
        let key = format!("{unsorted:?}");
        let capacity = self.capacity;
        let mut summary = self
            .kept_or_computed(
                version,
                &key,
                |inner| Entry::fresh(inner.summaries.get(&key)),
                async {
                    let unfiltered = self.unfiltered(client, version).await?;
                    queries::summary_with(client, &unsorted, Some(&unfiltered)).await
                },
                |inner, summary| {
                    if inner.summaries.len() >= capacity
                        && !inner.summaries.contains_key(&key)
                        && let Some(oldest) = inner
                            .summaries
                            .iter()
                            .min_by_key(|(_, e)| e.order)
                            .map(|(k, _)| k.clone())
                    {
                        inner.summaries.remove(&oldest);
                    }
                    inner.clock += 1;
                    let order = inner.clock;
                    inner
                        .summaries
                        .insert(key.clone(), Entry::new(summary, order));
                },
            )
            .await?;
        summary.filters = filters.clone();
        Ok(summary)
    }

    /// The filter form's choices at version `at` (read when there is no version).
    pub async fn options(
        &self,
        client: &Client,
        at: Option<&Version>,
    ) -> Result<FilterOptions, DashboardError> {
        let Some(version) = at else {
            return queries::filter_options(client).await;
        };
        self.kept_or_computed(
            version,
            OPTIONS,
            |inner| Entry::fresh(inner.options.as_ref()),
            queries::filter_options(client),
            |inner, options| inner.options = Some(Entry::new(options, 0)),
        )
        .await
    }

    /// The figures no filter changes, at `version`.
    async fn unfiltered(
        &self,
        client: &Client,
        version: &Version,
    ) -> Result<Unfiltered, DashboardError> {
        self.kept_or_computed(
            version,
            UNFILTERED,
            |inner| Entry::fresh(inner.unfiltered.as_ref()),
            queries::unfiltered(client),
            |inner, unfiltered| inner.unfiltered = Some(Entry::new(unfiltered, 0)),
        )
        .await
    }

    /// What `kept` finds at `version`, else the result of `compute` (handed to `keep` when it succeeds), computed
    /// once at a time per `flight` key: whoever asks meanwhile waits, then finds it kept.
    async fn kept_or_computed<T: Clone>(
        &self,
        version: &Version,
        flight: &str,
        kept: impl Fn(&Inner) -> Option<T>,
        compute: impl Future<Output = Result<T, DashboardError>>,
        keep: impl FnOnce(&mut Inner, T),
    ) -> Result<T, DashboardError> {
        let found = kept(&self.at_version(version));
        if let Some(value) = found {
            return Ok(value);
        }
        let lock = self.flight(flight);
        let computing = lock.lock().await;
        // (The guard is dropped before any await: the found value is taken out first.)
        let found = kept(&self.at_version(version));
        let result = match found {
            Some(value) => Ok(value),
            None => compute
                .await
                .inspect(|value| keep(&mut self.at_version(version), value.clone())),
        };
        drop(computing);
        // Later requests find the result kept (or compute again after a failure).
        self.flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(flight);
        result
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cache's contents, emptied first when they belong to another version than `version`.
    fn at_version(&self, version: &Version) -> MutexGuard<'_, Inner> {
        let mut inner = self.lock();
        if inner.version.as_ref() != Some(version) {
            *inner = Inner {
                version: Some(version.clone()),
                ..Inner::default()
            };
        }
        inner
    }

    /// The lock of the computation `key`, shared by everyone asking for it meanwhile.
    fn flight(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        flights.entry(key.to_string()).or_default().clone()
    }
}
