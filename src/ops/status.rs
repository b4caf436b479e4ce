//! The status page at `/` for a browser (`Accept: text/html`): what the
//! cache saves and holds, the upstream's state, the most requested
//! packages. Server-rendered, a little CSS, refreshes itself; it shows no
//! secret and no upstream credential (origins only, which read access may
//! see anyway). Everything else gets the one-line text of before.

use std::sync::Mutex;

use http::header::{HeaderMap, ACCEPT, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, VARY};
use http::{HeaderValue, Response, StatusCode};

use super::Ops;
use crate::body::{full, Body};
use crate::cache::now_ms;
use crate::metrics::Totals;
use crate::upstream::BreakerState;

/// Seconds between the page's own refreshes.
const REFRESH_S: u32 = 10;
/// Packages listed as the most requested.
const TOP: usize = 10;
const DAY_MS: u64 = 24 * 3600 * 1000;

/// The counters as they stood when the current UTC day began (or at start),
/// so the page can tell today's share from the totals since start.
pub(super) struct Today {
    day: u64,
    at_start_of_day: Totals,
}

impl Default for Today {
    fn default() -> Self {
        Today {
            day: now_ms() / DAY_MS,
            at_start_of_day: Totals::default(),
        }
    }
}

/// `Accept` names `text/html` (a browser).
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

impl Ops {
    pub(crate) fn status_page(&self) -> Response<Body> {
        let totals = self.metrics.totals();
        let today = self.today(totals);
        let html = self.render_status(totals, today);
        let length = html.len().to_string();
        let mut response = Response::new(full(html));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(VARY, HeaderValue::from_static("Accept"));
        if let Ok(length) = HeaderValue::from_str(&length) {
            headers.insert(CONTENT_LENGTH, length);
        }
        *response.status_mut() = StatusCode::OK;
        response
    }

    /// The counters since the start of today (UTC).
    fn today(&self, now: Totals) -> Totals {
        let Ok(mut today) = self.today.lock() else {
            return now;
        };
        let day = now_ms() / DAY_MS;
        if day != today.day {
            *today = Today {
                day,
                at_start_of_day: now,
            };
        }
        let base = today.at_start_of_day;
        Totals {
            from_cache: now.from_cache - base.from_cache,
            cacheable: now.cacheable - base.cacheable,
            bytes_from_cache: now.bytes_from_cache - base.bytes_from_cache,
            bytes_from_upstream: now.bytes_from_upstream - base.bytes_from_upstream,
            evictions: now.evictions - base.evictions,
            evicted_bytes: now.evicted_bytes - base.evicted_bytes,
        }
    }

    fn render_status(&self, since_start: Totals, today: Totals) -> String {
        let cache = self.cache.totals();
        let dir = &self.config.cache.dir;
        let free = fs2::available_space(dir).ok();
        let cap = self.config.cache.max_size.map(|cap| cap.bytes());
        let size = match cap {
            Some(cap) => format!(
                "{} of {} ({})",
                bytes(cache.bytes),
                bytes(cap),
                percent(cache.bytes, cap)
            ),
            None => format!("{} (no cap)", bytes(cache.bytes)),
        };
        let rows = [
            ("Hit ratio", hit_ratio(&since_start), hit_ratio(&today)),
            (
                "Served from the cache",
                served(&since_start, true),
                served(&today, true),
            ),
            (
                "Served from the upstream",
                served(&since_start, false),
                served(&today, false),
            ),
            ("Evictions", evictions(&since_start), evictions(&today)),
        ];
        let mut html = String::with_capacity(8 * 1024);
        html.push_str(&head());
        let fronted: Vec<String> = self
            .pipeline
            .upstreams()
            .iter()
            .map(|u| escape(crate::upstream::origin_of(&u.service_index)))
            .collect();
        html.push_str(&format!(
            "<h1>nucache {}</h1>\n<p class=\"sub\">up {} &middot; in front of {} &middot; refreshes every {REFRESH_S} s</p>\n",
            env!("CARGO_PKG_VERSION"),
            uptime(self.started.elapsed().as_secs()),
            fronted.join(" and "),
        ));
        html.push_str("<table id=\"traffic\">\n<tr><th></th><th>since start</th><th>today (UTC)</th></tr>\n");
        for (name, start, day) in rows {
            html.push_str(&format!("<tr><td>{name}</td><td>{start}</td><td>{day}</td></tr>\n"));
        }
        html.push_str("</table>\n<table id=\"cache\">\n");
        let storage = if self.cache.health.problem().is_none() {
            "writable"
        } else {
            "<span class=\"bad\">not writable</span>"
        };
        for (name, value) in [
            ("Cache size", size),
            ("Entries", cache.entries.to_string()),
            ("Free disk", free.map_or("unknown".to_string(), bytes)),
            ("Storage", storage.to_string()),
            ("Downloads in flight", self.pipeline.downloads_in_flight().to_string()),
        ] {
            html.push_str(&format!("<tr><td>{name}</td><td>{value}</td></tr>\n"));
        }
        if let Some(shared) = &self.shared {
            let state = match shared.is_down() {
                false => "reachable".to_string(),
                true => "<span class=\"bad\">unreachable (breaker open): reads go to the upstream</span>".to_string(),
            };
            html.push_str(&format!(
                "<tr><td>Shared store</td><td>{} &middot; {state}</td></tr>\n",
                escape(shared.url())
            ));
        }
        html.push_str("</table>\n");
        html.push_str(&self.upstream_table());
        html.push_str(&self.fleet_table());
        html.push_str(&self.top_packages());
        html.push_str("</body>\n</html>\n");
        html
    }

    fn upstream_table(&self) -> String {
        let mut html = String::from("<h2>Upstream</h2>\n<table id=\"upstream\">\n");
        for origin in self.pipeline.upstreams().into_iter().flat_map(|u| u.status.origins) {
            let state = match origin.state {
                BreakerState::Closed => "up".to_string(),
                BreakerState::Open => format!(
                    "<span class=\"bad\">down</span> for {} s",
                    origin.open_for_seconds.unwrap_or(0)
                ),
            };
            html.push_str(&format!(
                "<tr><td>{}</td><td>{state}</td><td>{} failures in a row</td></tr>\n",
                escape(origin.origin.as_deref().unwrap_or("-")),
                origin.consecutive_failures
            ));
        }
        html.push_str("</table>\n");
        html
    }

    /// This node and each peer: up (owns its keys) or down (its keys go
    /// to the next owner), and the forwards counted since start.
    fn fleet_table(&self) -> String {
        let Some(fleet) = self.pipeline.fleet() else {
            return String::new();
        };
        let mut html = String::from("<h2>Fleet</h2>\n<table id=\"fleet\">\n");
        html.push_str(&format!(
            "<tr><td>{} (this node)</td><td>up</td><td></td></tr>\n",
            escape(fleet.node.as_deref().unwrap_or("-"))
        ));
        for peer in fleet.peers {
            let state = match peer.up {
                true => "up".to_string(),
                false => "<span class=\"bad\">down</span>".to_string(),
            };
            let why = peer.last_error.as_deref().map(escape).unwrap_or_default();
            html.push_str(&format!(
                "<tr><td>{}</td><td>{state}</td><td>{why}</td></tr>\n",
                escape(peer.url.as_deref().unwrap_or("-"))
            ));
        }
        html.push_str("</table>\n");
        let fleet = &self.metrics.fleet;
        let forwards: Vec<String> = fleet
            .forwards()
            .iter()
            .map(|(label, n)| format!("{n} {label}"))
            .collect();
        html.push_str(&format!(
            "<p class=\"sub\">misses asked of their owner: {}; requests served to peers: {}</p>\n",
            forwards.join(", "),
            fleet.served_to_peers.get()
        ));
        html
    }

    fn top_packages(&self) -> String {
        let top = self.cache.most_requested(TOP);
        let mut html = String::from("<h2>Most requested packages</h2>\n");
        if top.is_empty() {
            html.push_str("<p>No package served from the cache yet.</p>\n");
            return html;
        }
        html.push_str("<table id=\"packages\">\n<tr><th>package</th><th>hits</th></tr>\n");
        for (key, hits) in top {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{hits}</td></tr>\n",
                escape(&package_of(&key))
            ));
        }
        html.push_str("</table>\n<p class=\"sub\">hits while in memory</p>\n");
        html
    }
}

/// `…/flatcontainer/{id}/{version}/{file}` -> `id version`.
fn package_of(key: &str) -> String {
    match key.split('/').collect::<Vec<_>>().as_slice() {
        [.., id, version, _] => format!("{id} {version}"),
        _ => key.to_string(),
    }
}

fn head() -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">\n<title>nucache status</title>\n<style>\n\
         body {{ font: 15px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 48em; color: #222; }}\n\
         h1 {{ margin-bottom: 0; }} .sub {{ color: #666; margin-top: .2em; }}\n\
         table {{ border-collapse: collapse; margin: 1em 0; width: 100%; }}\n\
         td, th {{ border-bottom: 1px solid #ddd; padding: .3em .6em; text-align: left; }}\n\
         td:first-child {{ width: 40%; }} .bad {{ color: #b00; font-weight: bold; }}\n\
         </style>\n</head>\n<body>\n"
    )
}

fn hit_ratio(totals: &Totals) -> String {
    if totals.cacheable == 0 {
        return "no requests yet".to_string();
    }
    format!(
        "{} ({} of {} requests)",
        percent(totals.from_cache, totals.cacheable),
        totals.from_cache,
        totals.cacheable
    )
}

fn served(totals: &Totals, from_cache: bool) -> String {
    let all = totals.bytes_from_cache + totals.bytes_from_upstream;
    let part = if from_cache {
        totals.bytes_from_cache
    } else {
        totals.bytes_from_upstream
    };
    format!("{} ({})", bytes(part), percent(part, all))
}

fn evictions(totals: &Totals) -> String {
    format!("{} ({})", totals.evictions, bytes(totals.evicted_bytes))
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0%".to_string();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

/// `1.5 GiB`, `12 KiB`, `800 B`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn uptime(seconds: u64) -> String {
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes} min {} s", seconds % 60),
        (0, _) => format!("{hours} h {minutes} min"),
        _ => format!("{days} d {hours} h"),
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The day's starting point moves under a lock taken by page views only.
pub(super) type TodayCell = Mutex<Today>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(bytes(800), "800 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(0, 0), "0%");
        assert_eq!(uptime(3725), "1 h 2 min");
        assert_eq!(
            escape("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
