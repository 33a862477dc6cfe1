//! The run's report as one self-contained HTML file, in the manner of `fencekit demo`'s: the
//! summary table, then for each run an SVG timeline with a row per node (when it acted, with
//! which generation), a row of the faults in force (one line per fault, overlapping ones
//! stacked), a row of the ledger's completions (landed, landed twice, refused) and the
//! checker's violations marked where they happened.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use crate::history::{FaultKind, History, Mode};
use crate::summary::RunSummary;

const LEFT: f64 = 90.0;
const PLOT: f64 = 1100.0;
const ROW: f64 = 26.0;
/// Ledgers longer than this show only their refused and doubled entries.
const PLAIN_LANDINGS_DRAWN: usize = 5_000;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A stretch a node acted with one generation; 200 ms without such an answer ends it.
struct Acting {
    node: u64,
    generation: Option<u64>,
    from_ms: i64,
    to_ms: i64,
}

fn acting(h: &History) -> Vec<Acting> {
    let mut samples: Vec<_> = h.samples.iter().collect();
    samples.sort_by_key(|s| s.received_ms);
    let mut open: HashMap<u64, Acting> = HashMap::new();
    let mut done = Vec::new();
    for s in samples {
        let live = s.lease_remaining_ms.is_some_and(|r| r > 0.0);
        let continues = open.get(&s.node).is_some_and(|a| {
            live && a.generation == s.generation && s.received_ms <= a.to_ms + 200
        });
        if continues {
            if let Some(a) = open.get_mut(&s.node) {
                a.to_ms = s.received_ms;
            }
            continue;
        }
        if let Some(ended) = open.remove(&s.node) {
            done.push(ended);
        }
        if live {
            open.insert(
                s.node,
                Acting {
                    node: s.node,
                    generation: s.generation,
                    from_ms: s.received_ms,
                    to_ms: s.received_ms,
                },
            );
        }
    }
    done.extend(open.into_values());
    done
}

fn colour(kind: FaultKind) -> &'static str {
    use FaultKind as K;
    match kind {
        K::PartitionSymmetric
        | K::PartitionOneWay
        | K::PartitionBridge
        | K::PartitionLeader
        | K::PartitionFlapping
        | K::PartitionStore => "#6a51a3",
        K::PauseNode | K::PauseStore => "#d94801",
        K::Zombie => "#a50f15",
        K::KillNode | K::KillStore => "#252525",
        K::ClockRate => "#2171b5",
        K::DiskFullNode | K::DiskFullStore => "#8c6d31",
    }
}

fn kind_name(kind: FaultKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One run's SVG.
fn svg(h: &History, summary: &RunSummary) -> String {
    let span = h.ended_ms.max(1) as f64;
    let x = |ms: i64| LEFT + PLOT * (ms.max(0) as f64 / span);
    let node_rows = h.nodes.len();
    // Faults stacked greedily into lines where they do not overlap.
    let mut lines: Vec<i64> = Vec::new();
    let mut fault_line = Vec::new();
    for f in &h.faults {
        let end = f.end_ms.unwrap_or(h.ended_ms);
        let line = lines
            .iter()
            .position(|&busy| busy <= f.start_ms)
            .unwrap_or_else(|| {
                lines.push(0);
                lines.len() - 1
            });
        lines[line] = end;
        fault_line.push(line);
    }
    let fault_top = 20.0 + ROW * node_rows as f64;
    let ledger_top = fault_top + 10.0 * lines.len().max(1) as f64 + 14.0;
    let height = ledger_top + ROW + 30.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="11">"#,
        LEFT + PLOT + 20.0
    );
    // A time axis, in seconds since the run began.
    let step_s = [5, 10, 30, 60, 300, 600, 1800]
        .into_iter()
        .find(|&step| span / 1e3 / step as f64 <= 12.0)
        .unwrap_or(3600);
    let mut tick = 0i64;
    while (tick as f64) <= span {
        let _ = write!(
            out,
            r##"<line x1="{0}" x2="{0}" y1="12" y2="{1}" stroke="#eee"/><text x="{0}" y="10" text-anchor="middle" fill="#888">{2} s</text>"##,
            x(tick),
            height - 20.0,
            tick / 1000
        );
        tick += step_s * 1000;
    }
    for (row, id) in h.nodes.iter().enumerate() {
        let y = 20.0 + ROW * row as f64;
        let _ = write!(out, r#"<text x="4" y="{}">node {id}</text>"#, y + 14.0);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{}" y2="{}" stroke="#ddd"/>"##,
            LEFT + PLOT,
            y + 10.0,
            y + 10.0
        );
        if let Some(spans) = h.down.get(&format!("n{id}")) {
            for s in spans {
                let end = s.end_ms.unwrap_or(h.ended_ms);
                let _ = write!(
                    out,
                    r##"<rect x="{}" y="{}" width="{}" height="18" fill="#bbb" opacity="0.5"><title>down {}–{} ms</title></rect>"##,
                    x(s.start_ms),
                    y + 1.0,
                    (x(end) - x(s.start_ms)).max(1.0),
                    s.start_ms,
                    end
                );
            }
        }
    }
    for a in acting(h) {
        let row = h.nodes.iter().position(|&n| n == a.node).unwrap_or(0);
        let y = 20.0 + ROW * row as f64 + 4.0;
        let hue = a.generation.map_or(120, |g| (g * 47) % 360);
        let label = a
            .generation
            .map_or_else(|| "TTL lock".to_owned(), |g| format!("generation {g}"));
        let _ = write!(
            out,
            r#"<rect x="{}" y="{y}" width="{}" height="12" fill="hsl({hue},60%,55%)"><title>node {} acting, {label}: {}–{} ms</title></rect>"#,
            x(a.from_ms),
            (x(a.to_ms) - x(a.from_ms)).max(1.0),
            a.node,
            a.from_ms,
            a.to_ms
        );
    }
    let _ = write!(out, r#"<text x="4" y="{}">faults</text>"#, fault_top + 10.0);
    for (f, line) in h.faults.iter().zip(fault_line) {
        let end = f.end_ms.unwrap_or(h.ended_ms);
        let y = fault_top + 10.0 * line as f64;
        let _ = write!(
            out,
            r#"<rect x="{}" y="{y}" width="{}" height="8" fill="{}"><title>{} on {}: {} ({}–{} ms)</title></rect>"#,
            x(f.start_ms),
            (x(end) - x(f.start_ms)).max(1.0),
            colour(f.kind),
            kind_name(f.kind),
            escape(&f.targets.join(",")),
            escape(&f.detail),
            f.start_ms,
            end
        );
    }
    let _ = write!(
        out,
        r#"<text x="4" y="{}">ledger</text>"#,
        ledger_top + 14.0
    );
    if let Some(ledger) = h.snapshots.last() {
        let mut landed: BTreeMap<(&str, u64), u32> = BTreeMap::new();
        for e in &ledger.entries {
            let (colour, what) = if !e.landed() {
                ("#fd8d3c", "refused")
            } else {
                let n = landed.entry((e.job.as_str(), e.run)).or_default();
                *n += 1;
                if *n > 1 {
                    ("#e31a1c", "LANDED TWICE")
                } else {
                    ("#41ab5d", "landed")
                }
            };
            // A long run's tens of thousands of plain landings would make the page too heavy
            // to open: past a few thousand entries only the telling ones are drawn.
            if what == "landed" && ledger.entries.len() > PLAIN_LANDINGS_DRAWN {
                continue;
            }
            let tall = if what == "LANDED TWICE" { 22.0 } else { 12.0 };
            let _ = write!(
                out,
                r#"<line x1="{0}" x2="{0}" y1="{1}" y2="{2}" stroke="{colour}"><title>{3} run {4} by {5} (generation {6:?}): {what} at {7} ms</title></line>"#,
                x(e.at_ms),
                ledger_top + 2.0,
                ledger_top + 2.0 + tall,
                escape(&e.job),
                e.run,
                e.holder,
                e.generation,
                e.at_ms
            );
        }
    }
    for check in &summary.checks {
        for v in &check.violations {
            if let Some(at) = v.at_ms {
                let _ = write!(
                    out,
                    r##"<circle cx="{}" cy="{}" r="4" fill="#e31a1c"><title>{}: {}</title></circle>"##,
                    x(at),
                    height - 12.0,
                    check.name,
                    escape(&v.what)
                );
            }
        }
    }
    out.push_str("</svg>");
    out
}

/// The whole page: the summary table, then each run's timeline.
pub(crate) fn html(runs: &[(&History, &RunSummary)], table: &str) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>fencekit torture run</title>\
         <style>body{font-family:sans-serif;margin:24px}pre{background:#f6f6f6;padding:12px}\
         </style></head><body><h1>fencekit torture run</h1>",
    );
    let _ = write!(out, "<pre>{}</pre>", escape(table));
    out.push_str(
        "<p>Rows: each node (coloured while it acted, one hue per generation; grey while it was \
         down), the faults in force (purple partitions, orange pauses, dark red zombies, black \
         kills, blue clock rates, brown full disks), and the ledger (green landed, orange \
         refused, tall red landed a second time; past 5,000 entries, the landed ones are not \
         drawn). Red dots: the checker's violations. Hover for \
         details.</p>",
    );
    for (h, summary) in runs {
        let title = match h.mode {
            Mode::Naive => "The naive control: a TTL lock and an unfenced store",
            Mode::Fenced => "fencekit: leases and fencing tokens",
        };
        let _ = write!(
            out,
            "<h2>{title}</h2><p>seed {}, {} faults played, {} violations</p>{}",
            h.seed,
            h.faults.len(),
            summary.violations,
            svg(h, summary)
        );
        // Violations known only by a node's clock have no place on the time axis.
        let untimed: Vec<String> = summary
            .checks
            .iter()
            .flat_map(|c| c.violations.iter().map(move |v| (c.name, v)))
            .filter(|(_, v)| v.at_ms.is_none())
            .map(|(name, v)| format!("<li>{name}: {}</li>", escape(&v.what)))
            .collect();
        if !untimed.is_empty() {
            let _ = write!(
                out,
                "<p>Not on the axis (timed by a node's clock only):</p><ul>{}</ul>",
                untimed.join("")
            );
        }
    }
    out.push_str("</body></html>");
    out
}
