//! The Prometheus text exposition format (version 0.0.4): `# HELP`, `# TYPE`, then samples.
//! Histograms are written cumulative with `le` in seconds, as Prometheus expects.
use std::fmt::Write;

use crate::{Histogram, BOUNDS_NS};

/// Builds one exposition; each family is written whole (HELP, TYPE, samples) by one call.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

/// A label set: pairs of name and value (values are escaped here).
pub type Labels<'a> = &'a [(&'a str, &'a str)];

fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn labels(l: Labels<'_>, extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// A float as Prometheus writes it (integers without a fraction).
fn num(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// A counter family; `name` ends in `_total` by convention.
    pub fn counter(&mut self, name: &str, help: &str, samples: &[(Labels<'_>, u64)]) {
        self.header(name, "counter", help);
        for (l, v) in samples {
            let _ = writeln!(self.out, "{name}{} {v}", labels(l, None));
        }
    }

    /// A counter family of non-integer totals (CPU seconds).
    pub fn counter_f64(&mut self, name: &str, help: &str, samples: &[(Labels<'_>, f64)]) {
        self.header(name, "counter", help);
        for (l, v) in samples {
            let _ = writeln!(self.out, "{name}{} {}", labels(l, None), num(*v));
        }
    }

    /// A gauge family.
    pub fn gauge(&mut self, name: &str, help: &str, samples: &[(Labels<'_>, f64)]) {
        self.header(name, "gauge", help);
        for (l, v) in samples {
            let _ = writeln!(self.out, "{name}{} {}", labels(l, None), num(*v));
        }
    }

    /// A histogram family of durations, in seconds.
    pub fn histogram(&mut self, name: &str, help: &str, samples: &[(Labels<'_>, &Histogram)]) {
        self.header(name, "histogram", help);
        for (l, h) in samples {
            let (b, sum_ns) = h.snapshot();
            let mut cum = 0u64;
            for (i, n) in b.iter().enumerate() {
                cum += n;
                let le = match BOUNDS_NS.get(i) {
                    Some(ns) => num(*ns as f64 / 1e9),
                    None => "+Inf".to_string(),
                };
                let _ = writeln!(
                    self.out,
                    "{name}_bucket{} {cum}",
                    labels(l, Some(("le", &le)))
                );
            }
            let _ = writeln!(
                self.out,
                "{name}_sum{} {}",
                labels(l, None),
                sum_ns as f64 / 1e9
            );
            let _ = writeln!(self.out, "{name}_count{} {cum}", labels(l, None));
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn families_render_as_prometheus_reads_them() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_millis(2));
        let mut e = Exposition::new();
        e.counter("cfs_x_total", "X.", &[(&[("op", "a\"b")], 3)]);
        e.gauge("cfs_up", "Up.", &[(&[], 1.0), (&[("ds", "01")], 0.5)]);
        e.histogram("cfs_d_seconds", "D.", &[(&[("op", "READ")], &h)]);
        let s = e.finish();
        assert!(s.contains("# TYPE cfs_x_total counter\ncfs_x_total{op=\"a\\\"b\"} 3\n"));
        assert!(s.contains("cfs_up 1\ncfs_up{ds=\"01\"} 0.5\n"));
        assert!(s.contains("cfs_d_seconds_bucket{op=\"READ\",le=\"0.000025\"} 0\n"));
        assert!(s.contains("cfs_d_seconds_bucket{op=\"READ\",le=\"0.00005\"} 1\n"));
        assert!(s.contains("cfs_d_seconds_bucket{op=\"READ\",le=\"0.0025\"} 2\n"));
        assert!(s.contains("cfs_d_seconds_bucket{op=\"READ\",le=\"+Inf\"} 2\n"));
        assert!(s.contains("cfs_d_seconds_count{op=\"READ\"} 2\n"));
    }
}
