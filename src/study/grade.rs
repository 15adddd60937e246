//! Grading an answer by its final number (GSM8K convention: the last number in the text).

/// The last number in a text (`1,234`, `-5`, `3.5`, GSM8K's `#### 42`), if any.
pub fn last_number(text: &str) -> Option<f64> {
    let mut last = None;
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (chars[i] == ',' && i + 1 < chars.len() && chars[i + 1].is_ascii_digit())
                    || (chars[i] == '.' && i + 1 < chars.len() && chars[i + 1].is_ascii_digit()))
            {
                i += 1;
            }
            // A minus is a sign only when it does not follow a word or number ("12-3" is 3).
            let neg = start > 0
                && chars[start - 1] == '-'
                && (start == 1 || !chars[start - 2].is_ascii_alphanumeric());
            let s: String = chars[start..i].iter().filter(|c| **c != ',').collect();
            if let Ok(v) = s.parse::<f64>() {
                last = Some(if neg { -v } else { v });
            }
        } else {
            i += 1;
        }
    }
    last
}

/// Whether `answer`'s last number equals `expected` within `tolerance`.
pub fn is_correct(answer: &str, expected: f64, tolerance: f64) -> bool {
    last_number(answer).is_some_and(|x| (x - expected).abs() <= tolerance)
}
