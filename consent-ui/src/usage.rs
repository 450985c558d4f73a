//! Usage analytics rendering for the developer portal (issue 9): SVG charts drawn on the
//! server (no script, no external asset; `role="img"`, `<title>`, `aria-label`), CSV, and
//! the monthly usage statement as an HTML fragment and CSV. Pure functions over plain
//! data; the queries live in `authz-store` (`UsageStore`), the glue in
//! `authz-server::usage`.

use std::fmt::Write;

/// One labelled value (a time bucket, an endpoint).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub label: String,
    pub value: f64,
}

const W: f64 = 640.0;
const H: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 64.0;

/// Text for XML/HTML content and attributes.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A "nice" axis maximum (1, 2 or 5 × 10^n) at or above `max`.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= max {
            return m * p;
        }
    }
    10.0 * p
}

fn num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.2}")
    }
}

/// Frame, title, y axis with 5 gridlines and x labels (at most ~8 shown).
fn frame(title: &str, y_label: &str, points: &[Point], max: f64, svg: &mut String) {
    let summary = points
        .iter()
        .map(|p| format!("{}: {}", p.label, num(p.value)))
        .collect::<Vec<_>>()
        .join("; ");
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}"><title>{}</title><desc>{}</desc>"#,
        esc(title),
        esc(title),
        esc(&summary)
    );
    let _ = write!(
        svg,
        r##"<text x="{}" y="22" font-size="15" font-family="sans-serif" text-anchor="middle" fill="#111">{}</text>"##,
        W / 2.0,
        esc(title)
    );
    let plot_h = H - TOP - BOTTOM;
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let y = TOP + plot_h - plot_h * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="11" font-family="sans-serif" text-anchor="end" fill="#333">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            num(v)
        );
    }
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="#333"/><line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="#333"/>"##,
        TOP + plot_h,
        TOP + plot_h,
        W - RIGHT,
        TOP + plot_h
    );
    let _ = write!(
        svg,
        r##"<text x="14" y="{}" font-size="11" font-family="sans-serif" text-anchor="middle" fill="#333" transform="rotate(-90 14 {})">{}</text>"##,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        esc(y_label)
    );
    let n = points.len().max(1);
    let step = n.div_ceil(8);
    for (i, p) in points.iter().enumerate() {
        if i % step != 0 {
            continue;
        }
        let x = x_of(i, n);
        let _ = write!(
            svg,
            r##"<text x="{x:.1}" y="{:.1}" font-size="10" font-family="sans-serif" text-anchor="end" fill="#333" transform="rotate(-30 {x:.1} {:.1})">{}</text>"##,
            TOP + plot_h + 16.0,
            TOP + plot_h + 16.0,
            esc(&p.label)
        );
    }
}

fn x_of(i: usize, n: usize) -> f64 {
    let plot_w = W - LEFT - RIGHT;
    LEFT + plot_w * (i as f64 + 0.5) / n as f64
}

fn y_of(v: f64, max: f64) -> f64 {
    let plot_h = H - TOP - BOTTOM;
    TOP + plot_h - plot_h * (v / max).clamp(0.0, 1.0)
}

/// A line chart (calls over time): one point per bucket, a marker with a tooltip each.
pub fn line_chart_svg(title: &str, y_label: &str, points: &[Point]) -> String {
    let max = nice_max(points.iter().map(|p| p.value).fold(0.0, f64::max));
    let mut svg = String::new();
    frame(title, y_label, points, max, &mut svg);
    let n = points.len();
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{:.1},{:.1}", x_of(i, n), y_of(p.value, max)))
        .collect();
    if !path.is_empty() {
        let _ = write!(
            svg,
            r##"<polyline fill="none" stroke="#0b5394" stroke-width="2" points="{}"/>"##,
            path.join(" ")
        );
    }
    for (i, p) in points.iter().enumerate() {
        let _ = write!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#0b5394"><title>{}: {}</title></circle>"##,
            x_of(i, n),
            y_of(p.value, max),
            esc(&p.label),
            num(p.value)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A bar chart (top endpoints, calls per client).
pub fn bar_chart_svg(title: &str, y_label: &str, points: &[Point]) -> String {
    let max = nice_max(points.iter().map(|p| p.value).fold(0.0, f64::max));
    let mut svg = String::new();
    frame(title, y_label, points, max, &mut svg);
    let n = points.len().max(1);
    let bar_w = ((W - LEFT - RIGHT) / n as f64 * 0.7).max(1.0);
    for (i, p) in points.iter().enumerate() {
        let y = y_of(p.value, max);
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{y:.1}" width="{bar_w:.1}" height="{:.1}" fill="#0b5394"><title>{}: {}</title></rect>"##,
            x_of(i, n) - bar_w / 2.0,
            H - BOTTOM - y,
            esc(&p.label),
            num(p.value)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// RFC 4180 field: quoted when it holds a comma, quote or line break. A leading `=`, `+`,
/// `-` or `@` is prefixed with `'` so a spreadsheet never runs it as a formula.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// A CSV document (CRLF line ends, RFC 4180).
pub fn to_csv(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut o = String::new();
    let line = |fields: Vec<String>, o: &mut String| {
        o.push_str(&fields.join(","));
        o.push_str("\r\n");
    };
    line(header.iter().map(|h| csv_field(h)).collect(), &mut o);
    for r in rows {
        line(r.iter().map(|f| csv_field(f)).collect(), &mut o);
    }
    o
}

/// One client's line on a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    pub client_id: String,
    pub plan: String,
    pub calls: i64,
    pub billable: i64,
    pub price_per_1000_minor: u64,
    pub amount_minor: u64,
}

/// A monthly usage statement of one org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub org_id: String,
    /// `YYYY-MM`.
    pub period: String,
    pub currency: String,
    pub lines: Vec<StatementLine>,
    pub total_calls: i64,
    pub total_billable: i64,
    pub total_minor: u64,
}

/// `billable × price / 1000` in minor units, rounded half up.
pub fn price_minor(billable: i64, per_1000_minor: u64) -> u64 {
    let b = u128::try_from(billable.max(0)).unwrap_or(0);
    let v = (b * u128::from(per_1000_minor) + 500) / 1000;
    u64::try_from(v).unwrap_or(u64::MAX)
}

impl Statement {
    /// Lines from `(client, plan, calls, billable, price per 1,000)`, totals summed.
    pub fn new(
        org_id: &str,
        period: &str,
        currency: &str,
        usage: impl IntoIterator<Item = (String, String, i64, i64, u64)>,
    ) -> Self {
        let lines: Vec<StatementLine> = usage
            .into_iter()
            .map(|(client_id, plan, calls, billable, price)| StatementLine {
                amount_minor: price_minor(billable, price),
                client_id,
                plan,
                calls,
                billable,
                price_per_1000_minor: price,
            })
            .collect();
        Self {
            org_id: org_id.to_owned(),
            period: period.to_owned(),
            currency: currency.to_owned(),
            total_calls: lines.iter().map(|l| l.calls).sum(),
            total_billable: lines.iter().map(|l| l.billable).sum(),
            total_minor: lines.iter().map(|l| l.amount_minor).sum(),
            lines,
        }
    }
}

/// Minor units as a decimal amount with two places (`1234` → `12.34`).
pub fn money(minor: u64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

/// The statement as an HTML fragment (a table with a caption; the page supplies styles).
pub fn statement_html(s: &Statement) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<table class="statement"><caption>Usage statement for {} — {} ({})</caption><thead><tr><th scope="col">Client</th><th scope="col">Plan</th><th scope="col">Calls</th><th scope="col">Billable calls</th><th scope="col">Price per 1,000</th><th scope="col">Amount</th></tr></thead><tbody>"#,
        esc(&s.org_id),
        esc(&s.period),
        esc(&s.currency)
    );
    for l in &s.lines {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&l.client_id),
            esc(&l.plan),
            l.calls,
            l.billable,
            money(l.price_per_1000_minor),
            money(l.amount_minor)
        );
    }
    let _ = write!(
        h,
        r#"</tbody><tfoot><tr><th scope="row" colspan="2">Total</th><td>{}</td><td>{}</td><td></td><td>{} {}</td></tr></tfoot></table>"#,
        s.total_calls,
        s.total_billable,
        money(s.total_minor),
        esc(&s.currency)
    );
    h
}

/// The statement as CSV: one row per client, then a total row.
pub fn statement_csv(s: &Statement) -> String {
    let mut rows: Vec<Vec<String>> = s
        .lines
        .iter()
        .map(|l| {
            vec![
                s.org_id.clone(),
                s.period.clone(),
                l.client_id.clone(),
                l.plan.clone(),
                l.calls.to_string(),
                l.billable.to_string(),
                money(l.price_per_1000_minor),
                money(l.amount_minor),
                s.currency.clone(),
            ]
        })
        .collect();
    rows.push(vec![
        s.org_id.clone(),
        s.period.clone(),
        "TOTAL".into(),
        String::new(),
        s.total_calls.to_string(),
        s.total_billable.to_string(),
        String::new(),
        money(s.total_minor),
        s.currency.clone(),
    ]);
    to_csv(
        &[
            "org_id",
            "period",
            "client_id",
            "plan",
            "calls",
            "billable_calls",
            "price_per_1000",
            "amount",
            "currency",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(&str, f64)]) -> Vec<Point> {
        v.iter()
            .map(|(l, v)| Point {
                label: (*l).to_owned(),
                value: *v,
            })
            .collect()
    }

    #[test]
    fn charts_are_accessible_and_escaped() {
        let p = pts(&[("10:00", 3.0), ("10:05", 0.0), ("<b>", 7.0)]);
        for svg in [
            line_chart_svg("Calls & errors", "calls", &p),
            bar_chart_svg("Calls & errors", "calls", &p),
        ] {
            assert!(svg.starts_with("<svg"));
            assert!(svg.contains(r#"role="img""#));
            assert!(svg.contains(r#"aria-label="Calls &amp; errors""#));
            assert!(svg.contains("<title>Calls &amp; errors</title>"));
            assert!(svg.contains("&lt;b&gt;: 7"));
            assert!(!svg.contains("<b>"));
            // No external asset: the only URL is the SVG namespace.
            assert_eq!(svg.matches("http").count(), 1);
            assert!(svg.ends_with("</svg>"));
        }
        // The axis goes up to a round number above the maximum.
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(120.0), 200.0);
        assert_eq!(nice_max(0.0), 1.0);
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let csv = to_csv(
            &["a", "b"],
            &[
                vec!["x,y".into(), "=SUM(A1)".into()],
                vec!["q\"".into(), "1".into()],
            ],
        );
        assert_eq!(csv, "a,b\r\n\"x,y\",'=SUM(A1)\r\n\"q\"\"\",1\r\n");
    }

    #[test]
    fn statement_prices_billable_calls() {
        assert_eq!(price_minor(1500, 50), 75);
        assert_eq!(price_minor(1, 50), 0);
        assert_eq!(price_minor(10, 50), 1); // 0.5 rounds up
        let s = Statement::new(
            "org-1",
            "2026-11",
            "KES",
            [
                ("app-a".to_owned(), "standard".to_owned(), 2100, 2000, 50),
                ("app-b".to_owned(), "premium".to_owned(), 10, 10, 30),
            ],
        );
        assert_eq!(s.total_calls, 2110);
        assert_eq!(s.total_billable, 2010);
        assert_eq!(s.total_minor, 100);
        let html = statement_html(&s);
        assert!(html.contains(
            "<td>app-a</td><td>standard</td><td>2100</td><td>2000</td><td>0.50</td><td>1.00</td>"
        ));
        assert!(html.contains("1.00 KES"));
        let csv = statement_csv(&s);
        assert!(csv.contains("org-1,2026-11,app-a,standard,2100,2000,0.50,1.00,KES\r\n"));
        assert!(csv.ends_with("org-1,2026-11,TOTAL,,2110,2010,,1.00,KES\r\n"));
    }
}
