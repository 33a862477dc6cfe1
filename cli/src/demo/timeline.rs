//! The demo's report as one self-contained HTML file: the summary table, then for each run an
//! SVG timeline with a row per node showing when it acted as leader (and with which
//! generation), how far its lease or lock reached, the faults it suffered, and every
//! completion it wrote: landed, landed a second time, or rejected by the fence.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use super::nemesis::FaultKind;
use super::summary::{RECORDED_TWICE, Run, Summary, rows};
use crate::node::scheduler::Mode;

const LEFT: f64 = 80.0;
const PLOT: f64 = 860.0;
const ROW: f64 = 36.0;
const TOP: f64 = 48.0;

/// A stretch of time a node acted with one generation.
struct Acting {
    node: u64,
    generation: Option<u64>,
    from_ms: u64,
    to_ms: u64,
    /// How far the lease (or the lock, as the node believed) reached at the last sample.
    lease_to_ms: u64,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The stretches each node acted, from the samples; a gap of 200 ms without an answer ends
/// one.
fn acting(run: &Run) -> Vec<Acting> {
    let mut open: HashMap<u64, Acting> = HashMap::new();
    let mut done = Vec::new();
    for sample in &run.samples {
        let continues = open.get(&sample.node).is_some_and(|a| {
            sample.acting && a.generation == sample.generation && sample.at_ms <= a.to_ms + 200
        });
        if continues {
            if let Some(a) = open.get_mut(&sample.node) {
                a.to_ms = sample.at_ms;
                a.lease_to_ms = sample.at_ms + sample.lease_remaining_ms.unwrap_or(0);
            }
            continue;
        }
        if let Some(ended) = open.remove(&sample.node) {
            done.push(ended);
        }
        if sample.acting {
            open.insert(
                sample.node,
                Acting {
                    node: sample.node,
                    generation: sample.generation,
                    from_ms: sample.at_ms,
                    to_ms: sample.at_ms,
                    lease_to_ms: sample.at_ms + sample.lease_remaining_ms.unwrap_or(0),
                },
            );
        }
    }
    done.extend(open.into_values());
    done
}

fn title(mode: Mode) -> &'static str {
    match mode {
        Mode::Naive => "Naive: a TTL lock, unfenced writes",
        Mode::Fenced => "fencekit: leader lease, fenced writes",
    }
}

fn color(generation: Option<u64>) -> String {
    match generation {
        None => "#4a78c2".into(),
        Some(g) => format!("hsl({}, 55%, 45%)", (g * 67) % 360),
    }
}

/// The SVG timeline of one run.
fn svg(run: &Run) -> String {
    let rows: BTreeMap<u64, usize> = run.nodes.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let height = TOP + ROW * rows.len() as f64 + 30.0;
    let span = run.duration_ms.max(1) as f64;
    let x = |ms: u64| LEFT + PLOT * (ms as f64 / span).min(1.0);
    let y = |node: u64| TOP + ROW * rows.get(&node).copied().unwrap_or(0) as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="11">"#,
        w = LEFT + PLOT + 20.0
    );
    s.push_str(r##"<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#eee"/><line x1="0" y1="0" x2="0" y2="6" stroke="#999" stroke-width="2"/></pattern></defs>"##);
    for &node in rows.keys() {
        let _ = write!(
            s,
            r##"<text x="8" y="{}">node {node}</text><line x1="{LEFT}" x2="{}" y1="{}" y2="{}" stroke="#ddd"/>"##,
            y(node) + 21.0,
            LEFT + PLOT,
            y(node) + ROW - 2.0,
            y(node) + ROW - 2.0
        );
    }
    // The time axis, a tick every 5 s.
    let axis = TOP + ROW * rows.len() as f64 + 4.0;
    for t in (0..=run.duration_ms).step_by(5000) {
        let _ = write!(
            s,
            r##"<line x1="{0}" x2="{0}" y1="{TOP}" y2="{axis}" stroke="#f0f0f0"/><text x="{0}" y="{1}" text-anchor="middle" fill="#666">{2} s</text>"##,
            x(t),
            axis + 14.0,
            t / 1000
        );
    }
    for (i, fault) in run.faults.iter().enumerate() {
        let (x0, x1, row) = (x(fault.start_ms), x(fault.end_ms), y(fault.node));
        let style = match fault.kind {
            FaultKind::Pause | FaultKind::Kill => r#"fill="url(#hatch)""#,
            FaultKind::Partition => r##"fill="none" stroke="#c33" stroke-dasharray="4 3""##,
            FaultKind::Skew => r##"fill="#f3d36b" fill-opacity="0.5""##,
        };
        let _ = write!(
            s,
            r##"<rect x="{x0}" y="{}" width="{}" height="{}" {style}><title>{}</title></rect><text x="{x0}" y="{}" fill="#a33">{}</text>"##,
            row + 2.0,
            (x1 - x0).max(1.0),
            ROW - 6.0,
            escape(&fault.what),
            // Labels alternate between two lines so that neighbours do not overlap.
            TOP - 8.0 - 12.0 * (i % 2) as f64,
            escape(match fault.kind {
                FaultKind::Pause => "SIGSTOP",
                FaultKind::Partition => "partition",
                FaultKind::Kill => "kill -9",
                FaultKind::Skew => "clock skew",
            })
        );
    }
    for a in acting(run) {
        let row = y(a.node);
        let label = match a.generation {
            Some(g) => format!("node {} leads with generation {g}", a.node),
            None => format!("node {} holds the TTL lock", a.node),
        };
        let _ = write!(
            s,
            r#"<rect x="{0}" y="{1}" width="{2}" height="8" fill="{c}" fill-opacity="0.3"><title>{label}: its lease reaches {3} ms</title></rect><rect x="{0}" y="{4}" width="{5}" height="12" fill="{c}"><title>{label}, {6}–{7} ms</title></rect>"#,
            x(a.from_ms),
            row + 22.0,
            (x(a.lease_to_ms) - x(a.from_ms)).max(1.0),
            a.lease_to_ms,
            row + 9.0,
            (x(a.to_ms) - x(a.from_ms)).max(1.0),
            a.from_ms,
            a.to_ms,
            c = color(a.generation),
        );
        if let Some(g) = a.generation {
            let _ = write!(
                s,
                r##"<text x="{}" y="{}" fill="#fff" font-size="9">g{g}</text>"##,
                x(a.from_ms) + 2.0,
                row + 18.5
            );
        }
    }
    let mut landed: HashMap<(&str, u64), u32> = HashMap::new();
    for entry in &run.entries {
        let (cx, cy) = (x(entry.at_ms), y(entry.holder) + 4.0);
        let times = if entry.outcome.landed() {
            let n = landed.entry((entry.job.as_str(), entry.run)).or_default();
            *n += 1;
            *n
        } else {
            0
        };
        let what = format!(
            "{} ms: node {} completed {} run {}{}: {}",
            entry.at_ms,
            entry.holder,
            entry.job,
            entry.run,
            entry
                .generation
                .map_or_else(String::new, |g| format!(" with generation {g}")),
            match (entry.outcome.landed(), times) {
                (false, _) => format!("rejected as {}", entry.outcome.as_str()),
                (true, 1) => "landed".to_owned(),
                (true, _) => "landed AGAIN: the run recorded twice".to_owned(),
            }
        );
        let mark = match (entry.outcome.landed(), times) {
            (false, _) => format!(
                r##"<path d="M{0} {1}l-5 -5m0 5l5 -5M{0} {1}l5 5m0 -5l-5 5" stroke="#d00" stroke-width="2.5"/>"##,
                cx, cy
            ),
            (true, 1) => format!(r##"<circle cx="{cx}" cy="{cy}" r="2.5" fill="#2a2"/>"##),
            (true, _) => format!(
                r##"<path d="M{cx} {}l6 6l-6 6l-6 -6z" fill="#f80" stroke="#000"/>"##,
                cy - 6.0
            ),
        };
        let _ = write!(s, "<g><title>{}</title>{mark}</g>", escape(&what));
    }
    s.push_str("</svg>");
    s
}

/// The whole report.
pub(crate) fn html(runs: &[(&Run, &Summary)]) -> String {
    let mut page = String::from(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>fencekit demo: a zombie leader, fenced</title><style>
body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}th{text-align:left}
.legend span{margin-right:1.5em}.bad{color:#c00;font-weight:bold}
</style></head><body><h1>fencekit demo</h1>
<p>The same nemesis schedule, played twice against a group of nodes whose leader runs a cron-like scheduler: each job once per period, every completion written to a job ledger. First with a naive TTL lock and unfenced writes, then with fencekit's leader lease and fencing tokens checked by the store.</p>"#,
    );
    if let [(_, naive), (_, fenced)] = runs {
        page.push_str("<table><tr><th></th><th>naive TTL lock</th><th>fencekit</th></tr>");
        for (name, a, b) in rows(naive, fenced) {
            let cell = |v: &str| match (name, v) {
                (RECORDED_TWICE, v) if v != "0" => format!(r#"<td class="bad">{v}</td>"#),
                _ => format!("<td>{v}</td>"),
            };
            let _ = write!(page, "<tr><th>{name}</th>{}{}</tr>", cell(&a), cell(&b));
        }
        page.push_str("</table>");
    }
    page.push_str(r##"<p class="legend"><span>▬ acting as leader (fenced: colour = generation)</span><span style="opacity:.5">▬ lease or lock, as far as it reached</span><span style="color:#2a2">● completion landed</span><span style="color:#f80">◆ landed a second time</span><span style="color:#d00">✕ rejected by the fence</span><span>▨ paused or killed</span><span style="color:#c33">┅ cut off</span></p>"##);
    for (run, summary) in runs {
        let _ = write!(
            page,
            "<h2>{}</h2><p>{} jobs due; {} recorded twice; {} job bodies ran again; {} stale writes rejected.</p>{}",
            title(run.mode),
            summary.jobs_due,
            summary.recorded_twice,
            summary.ran_again,
            summary.stale_rejected,
            svg(run)
        );
        if !summary.duplicates.is_empty() {
            page.push_str("<p>Recorded twice: ");
            let list: Vec<String> = summary
                .duplicates
                .iter()
                .map(|d| format!("{} run {} (nodes {:?})", escape(&d.job), d.run, d.holders))
                .collect();
            page.push_str(&list.join("; "));
            page.push_str("</p>");
        }
    }
    page.push_str("</body></html>\n");
    page
}
