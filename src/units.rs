//! Numbers for people: sizes and durations, as the report and the notes print them.

/// Bytes as a short human string.
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A duration for people: `45.2s`, `3m 05s`, `1h 02m`.
pub fn duration(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        format!("{}m {:02}s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    } else {
        format!(
            "{}h {:02}m",
            (secs / 3600.0) as u64,
            ((secs % 3600.0) / 60.0) as u64
        )
    }
}

/// A count with thousands separators: `300,570`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `n` and the noun, singular or plural: `1 collection`, `4 collections`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// A rate as a whole number per second: `9,420 docs/s`.
pub fn rate(per_sec: f64, unit: &str) -> String {
    format!("{} {unit}/s", count(per_sec.max(0.0).round() as u64))
}

/// `s` in exactly `width` terminal columns, left-aligned: padded on the right, or cut in the
/// middle with `…` (wide characters such as Korean count twice).
pub fn fit_left(s: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthStr;
    let f = fit(s, width);
    let t = f.trim_start_matches(' ');
    format!("{t}{}", " ".repeat(width.saturating_sub(t.width())))
}

/// `s` in exactly `width` terminal columns: padded on the left, or cut in the middle with `…`
/// (wide characters such as Korean count twice).
pub fn fit(s: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthStr;
    let w = s.width();
    if w <= width {
        return format!("{}{s}", " ".repeat(width - w));
    }
    let keep = width.saturating_sub(1);
    let (head_w, tail_w) = (keep - keep / 2, keep / 2);
    let mut head = String::new();
    for c in s.chars() {
        if (head.clone() + &c.to_string()).width() > head_w {
            break;
        }
        head.push(c);
    }
    let mut tail: Vec<char> = Vec::new();
    for c in s.chars().rev() {
        let t: String = std::iter::once(c)
            .chain(tail.iter().rev().copied())
            .collect();
        if t.width() > tail_w {
            break;
        }
        tail.push(c);
    }
    let tail: String = tail.into_iter().rev().collect();
    let out = format!("{head}…{tail}");
    let pad = width.saturating_sub(out.width());
    format!("{}{out}", " ".repeat(pad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use unicode_width::UnicodeWidthStr;

    #[test]
    fn counts_rates_and_plurals_read_like_numbers() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(300_570), "300,570");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(rate(9419.8517, "docs"), "9,420 docs/s");
        assert_eq!(plural(1, "collection", "collections"), "1 collection");
        assert_eq!(plural(4, "collection", "collections"), "4 collections");
    }

    #[test]
    fn names_fit_their_column_whatever_their_script() {
        assert_eq!(fit("goals.users", 14), "   goals.users");
        let long = fit("analytics.events_2026_archive_by_customer", 20);
        assert_eq!(long.width(), 20);
        assert!(
            long.starts_with("analytics") && long.ends_with("customer"),
            "{long}"
        );
        let korean = fit("목표.사용자_기록_보관함_아주_긴_이름", 16);
        assert_eq!(korean.width(), 16, "{korean}");
        assert!(korean.contains('…'));
        assert_eq!(fit("목표.사용자", 12).width(), 12);
        assert_eq!(fit_left("목표.사용자", 12), "목표.사용자 ");
        assert_eq!(fit_left("analytics.events_2026_archive", 12).width(), 12);
    }
}
