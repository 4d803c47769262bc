//! Numbers as words, both ways: digits to the words a radiologist says ("12" -> "twelve",
//! "2.3" -> "two point three"; for comparing transcripts) and spoken words back to a value
//! (for checking stated measurements against the measured ones).

const SMALL: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 8] = [
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// "zero".."nineteen", "twenty".."ninety" -> their value.
fn unit_value(w: &str) -> Option<u64> {
    SMALL
        .iter()
        .position(|s| *s == w)
        .map(|p| p as u64)
        .or_else(|| {
            TENS.iter()
                .position(|s| *s == w)
                .map(|p| 20 + 10 * p as u64)
        })
}

/// "12" -> ["twelve"], "2.3" -> ["two", "point", "three"], "4500" -> ["four", "thousand",
/// "five", "hundred"].
pub fn digits_to_words(digits: &str) -> Vec<String> {
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    let mut out = match whole.parse::<u64>() {
        Ok(n) => number_words(n),
        // Too long to be a number anyone says: digit by digit.
        Err(_) => whole
            .chars()
            .filter_map(digit_word)
            .map(str::to_string)
            .collect(),
    };
    if let Some(f) = fraction {
        out.push("point".into());
        out.extend(f.chars().filter_map(digit_word).map(str::to_string));
    }
    out
}

fn digit_word(c: char) -> Option<&'static str> {
    const DIGITS: [&str; 10] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    c.to_digit(10).map(|d| DIGITS[d as usize])
}

pub fn number_words(n: u64) -> Vec<String> {
    fn below_thousand(n: u64, out: &mut Vec<String>) {
        let (h, rest) = (n / 100, n % 100);
        if h > 0 {
            out.push(SMALL[h as usize].into());
            out.push("hundred".into());
        }
        if rest >= 20 {
            out.push(TENS[(rest / 10) as usize - 2].into());
            if rest % 10 > 0 {
                out.push(SMALL[(rest % 10) as usize].into());
            }
        } else if rest > 0 || h == 0 {
            out.push(SMALL[rest as usize].into());
        }
    }
    if n == 0 {
        return vec!["zero".into()];
    }
    let mut out = Vec::new();
    let mut scales = Vec::new();
    let mut m = n;
    for name in [
        "",
        "thousand",
        "million",
        "billion",
        "trillion",
        "quadrillion",
        "quintillion",
    ] {
        scales.push((m % 1000, name));
        m /= 1000;
        if m == 0 {
            break;
        }
    }
    for (chunk, name) in scales.into_iter().rev() {
        if chunk == 0 {
            continue;
        }
        below_thousand(chunk, &mut out);
        if !name.is_empty() {
            out.push(name.into());
        }
    }
    out
}

/// The number spoken at the start of `words` (normalised words, see [`super::wer::normalize`]):
/// (value, digits after the point, words used). `["two", "point", "three"]` is (2.3, 1, 3).
///
/// Only words that continue a number as it is said join it: a units word after a tens word
/// ("forty five"), anything below a hundred after "hundred" or "thousand". Two numbers side
/// by side stay two ("image 45: 14 mm" is "forty five" then "fourteen", not 59).
pub fn words_to_number(words: &[String]) -> Option<(f64, usize, usize)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Last {
        Nothing,
        Small,
        Tens,
        Hundred,
        Thousand,
    }
    let mut total: u64 = 0;
    let mut current: u64 = 0;
    let mut used = 0;
    let mut last = Last::Nothing;
    while let Some(w) = words.get(used) {
        let next =
            match (unit_value(w), w.as_str()) {
                (Some(v), _) if v < 20 => {
                    let fits = match last {
                        Last::Nothing | Last::Hundred | Last::Thousand => true,
                        Last::Tens => (1..10).contains(&v),
                        Last::Small => false,
                    };
                    fits.then(|| {
                        current = current.saturating_add(v);
                        Last::Small
                    })
                }
                (Some(v), _) => matches!(last, Last::Nothing | Last::Hundred | Last::Thousand)
                    .then(|| {
                        current = current.saturating_add(v);
                        Last::Tens
                    }),
                (None, "hundred") => matches!(last, Last::Small | Last::Tens).then(|| {
                    current = current.max(1).saturating_mul(100);
                    Last::Hundred
                }),
                (None, "thousand") => matches!(last, Last::Small | Last::Tens | Last::Hundred)
                    .then(|| {
                        total = total.saturating_add(current.max(1).saturating_mul(1000));
                        current = 0;
                        Last::Thousand
                    }),
                _ => None,
            };
        match next {
            Some(l) => last = l,
            None => break,
        }
        used += 1;
    }
    if last == Last::Nothing {
        return None;
    }
    let mut value = total.saturating_add(current) as f64;
    let mut decimals = 0;
    if words.get(used).map(String::as_str) == Some("point") {
        let mut scale = 0.1;
        let mut j = used + 1;
        while let Some(d) = words.get(j).and_then(|w| unit_value(w)).filter(|d| *d < 10) {
            value += d as f64 * scale;
            scale /= 10.0;
            decimals += 1;
            j += 1;
        }
        if decimals > 0 {
            used = j;
        }
    }
    Some((value, decimals, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn both_ways_agree() {
        for n in [0u64, 7, 12, 20, 45, 100, 118, 1204, 4500, 999_999] {
            let w = number_words(n);
            assert_eq!(
                words_to_number(&w),
                Some((n as f64, 0, w.len())),
                "{n}: {w:?}"
            );
        }
        assert_eq!(digits_to_words("2.3"), words("two point three"));
        assert_eq!(
            words_to_number(&words("two point three centimeter")),
            Some((2.3, 1, 3))
        );
        assert_eq!(words_to_number(&words("nodule")), None);
    }

    #[test]
    fn numbers_side_by_side_stay_apart() {
        // "image 45: 14 mm", "image 2: 12 mm", "lesion 1: 14 mm" as normalised.
        assert_eq!(
            words_to_number(&words("forty five fourteen millimeter")),
            Some((45.0, 0, 2))
        );
        assert_eq!(words_to_number(&words("two twelve")), Some((2.0, 0, 1)));
        assert_eq!(words_to_number(&words("one fourteen")), Some((1.0, 0, 1)));
        assert_eq!(words_to_number(&words("zero five")), Some((0.0, 0, 1)));
        assert_eq!(words_to_number(&words("twenty thirty")), Some((20.0, 0, 1)));
        // As they are said, they still join.
        assert_eq!(
            words_to_number(&words("one hundred twenty five")),
            Some((125.0, 0, 4))
        );
        assert_eq!(
            words_to_number(&words("two thousand fourteen")),
            Some((2014.0, 0, 3))
        );
    }
}
