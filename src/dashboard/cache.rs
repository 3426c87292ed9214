//! Summaries kept per filter set while the warehouse does not change. Every committed load writes a ledger row in
//! its own transaction, so the ledger's row count and latest finish time name the warehouse's contents: each
//! request reads them (one indexed-free aggregate over a table of a row per load) and a change empties the cache.
//! Writes that bypass the loader (hand-written SQL) are picked up within [`MAX_AGE`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::DashboardError;
use super::filters::Filters;
use super::queries::{self, FilterOptions, Summary, Unfiltered};

/// The longest a cached summary is served, whatever the ledger says.
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// The cache: at most `capacity` summaries, all of one warehouse version.
pub struct Cache {
    capacity: usize,
    inner: Mutex<Inner>,
    /// The computations in progress, by key: who asks for one of them waits for it.
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The flight key of the [`Unfiltered`] figures (no filter set's key starts with a NUL).
const UNFILTERED: &str = "\0unfiltered";

#[derive(Default)]
struct Inner {
    version: Option<(i64, Option<String>)>,
    summaries: HashMap<String, Entry<Summary>>,
    options: Option<Entry<FilterOptions>>,
    unfiltered: Option<Entry<Unfiltered>>,
    /// Insertion counter: the oldest entry goes first when the cache is full.
    clock: u64,
}

struct Entry<T> {
    value: T,
    at: Instant,
    order: u64,
}

impl Cache {
    /// A cache of `capacity` summaries; 0 keeps none (every request queries).
    pub fn new(capacity: usize) -> Cache {
        Cache {
            capacity,
            inner: Mutex::new(Inner::default()),
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// Make the cache hold `version`'s entries only; returns the guard.
    fn at_version(&self, version: (i64, Option<String>)) -> std::sync::MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.version.as_ref() != Some(&version) {
            inner.summaries.clear();
            inner.options = None;
            inner.unfiltered = None;
            inner.version = Some(version);
        }
        inner
    }

    /// The summary for `filters`, from the cache when the warehouse has not changed since it was read. Viewers who
    /// ask for the same filter set while it is being computed wait for that computation instead of repeating it.
    pub async fn summary(
        &self,
        client: &mut Client,
        filters: &Filters,
    ) -> Result<Summary, DashboardError> {
        if self.capacity == 0 {
            return queries::summary(client, filters).await;
        }
        // The table sort only orders rows on the page: one entry serves every sort.
        let unsorted = Filters {
            sort: None,
            ..filters.clone()
        };
        let key = format!("{unsorted:?}");
        let version = queries::data_version(client).await?;
        if let Some(summary) = self.kept(&key, &version, filters) {
            return Ok(summary);
        }
        let flight = self.flight(&key);
        let computing = flight.lock().await;
        if let Some(summary) = self.kept(&key, &version, filters) {
            return Ok(summary);
        }
        let computed = async {
            let unfiltered = self.unfiltered(client, &version).await?;
            queries::summary_with(client, &unsorted, Some(&unfiltered)).await
        }
        .await;
        if let Ok(summary) = &computed {
            self.keep(key.clone(), version, summary.clone());
        }
        drop(computing);
        self.land(&key);
        let mut summary = computed?;
        summary.filters = filters.clone();
        Ok(summary)
    }

    /// The kept summary for `key` at `version`, with the sort of `filters`.
    fn kept(
        &self,
        key: &str,
        version: &(i64, Option<String>),
        filters: &Filters,
    ) -> Option<Summary> {
        let inner = self.at_version(version.clone());
        let entry = inner
            .summaries
            .get(key)
            .filter(|e| e.at.elapsed() < MAX_AGE)?;
        let mut summary = entry.value.clone();
        summary.filters = filters.clone();
        Some(summary)
    }

    /// Keep `summary` under `key`, making room by dropping the oldest entry when the cache is full.
    fn keep(&self, key: String, version: (i64, Option<String>), summary: Summary) {
        let mut inner = self.at_version(version);
        if inner.summaries.len() >= self.capacity
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
        inner.summaries.insert(
            key,
            Entry {
                value: summary,
                at: Instant::now(),
                order,
            },
        );
    }

    /// The figures no filter changes, computed once per version (one computation at a time).
    async fn unfiltered(
        &self,
        client: &Client,
        version: &(i64, Option<String>),
    ) -> Result<Unfiltered, DashboardError> {
        let kept = |cache: &Cache| {
            cache
                .at_version(version.clone())
                .unfiltered
                .as_ref()
                .filter(|e| e.at.elapsed() < MAX_AGE)
                .map(|e| e.value.clone())
        };
        if let Some(u) = kept(self) {
            return Ok(u);
        }
        let flight = self.flight(UNFILTERED);
        let computing = flight.lock().await;
        let result = match kept(self) {
            Some(u) => Ok(u),
            None => queries::unfiltered(client).await.inspect(|u| {
                self.at_version(version.clone()).unfiltered = Some(Entry {
                    value: u.clone(),
                    at: Instant::now(),
                    order: 0,
                });
            }),
        };
        drop(computing);
        self.land(UNFILTERED);
        result
    }

    /// The lock of the computation of `key`, shared by everyone asking for it meanwhile.
    fn flight(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        flights.entry(key.to_string()).or_default().clone()
    }

    /// The computation of `key` ended: later requests find its result kept (or compute again after a failure).
    fn land(&self, key: &str) {
        self.flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// The ledger's load count of the version the kept entries belong to (`None` while none is kept).
    pub fn version(&self) -> Option<i64> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .version
            .as_ref()
            .filter(|_| !inner.summaries.is_empty())
            .map(|(count, _)| *count)
    }

    /// The filter form's choices, from the cache while the warehouse has not changed.
    pub async fn options(&self, client: &mut Client) -> Result<FilterOptions, DashboardError> {
        if self.capacity == 0 {
            return queries::filter_options(client).await;
        }
        let version = queries::data_version(client).await?;
        {
            let inner = self.at_version(version.clone());
            if let Some(entry) = &inner.options
                && entry.at.elapsed() < MAX_AGE
            {
                return Ok(entry.value.clone());
            }
        }
        let options = queries::filter_options(client).await?;
        let mut inner = self.at_version(version);
        inner.options = Some(Entry {
            value: options.clone(),
            at: Instant::now(),
            order: 0,
        });
        Ok(options)
    }
}
