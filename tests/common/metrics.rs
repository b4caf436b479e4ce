//! `/metrics` read back as Prometheus text (`prometheus-parse`).

use std::time::{Duration, Instant};

use super::nucache::Nucache;

/// A parsed `/metrics`.
pub struct Scrape(prometheus_parse::Scrape);

impl Scrape {
    /// The value of `name` with exactly these labels (0 when absent: a
    /// counter that never moved may not be listed).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| s.labels.len() == labels.len())
            .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map_or(0.0, |s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                _ => f64::NAN,
            })
    }

    /// The sum of `name` over every label set whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                _ => 0.0,
            })
            .sum()
    }

    pub fn names(&self) -> Vec<&str> {
        self.0.samples.iter().map(|s| s.metric.as_str()).collect()
    }
}

/// GET /metrics (with `headers`), checked to be Prometheus text, parsed.
pub async fn scrape_with(nucache: &Nucache, headers: &[(&str, &str)]) -> Scrape {
    scrape_url(&nucache.url("/metrics"), headers).await
}

/// [`scrape_with`] of the `/metrics` at `url` (a nucache process's).
pub async fn scrape_url(url: &str, headers: &[(&str, &str)]) -> Scrape {
    let reply = super::nucache::send(http::Method::GET, url, headers, bytes::Bytes::new()).await;
    assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = reply.text();
    let lines = text.lines().map(|line| Ok(line.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("/metrics parses as Prometheus text");
    assert!(!parsed.samples.is_empty(), "no samples in {text}");
    Scrape(parsed)
}

pub async fn scrape(nucache: &Nucache) -> Scrape {
    scrape_with(nucache, &[]).await
}

/// Scrapes until `check` holds (counters move when a response body has
/// been sent to its end), for up to 10 s; the last scrape.
pub async fn scrape_until(nucache: &Nucache, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scraped = scrape(nucache).await;
        if check(&scraped) {
            return scraped;
        }
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
