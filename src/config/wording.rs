//! How configuration problems are put to the operator: did-you-mean
//! suggestions for misspelt keys.

/// The candidate closest to `input`, when it is close enough to be a
/// likely misspelling (case is ignored).
pub(crate) fn suggest<I, S>(input: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let input = input.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let score = strsim::jaro_winkler(&input, &c.as_ref().to_ascii_lowercase());
            (score, c.as_ref().to_string())
        })
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_only_close_names() {
        let keys = ["listen", "public_url", "upstream"];
        assert_eq!(suggest("lisen", keys), Some("listen".to_string()));
        assert_eq!(suggest("upstrem", keys), Some("upstream".to_string()));
        assert_eq!(suggest("zzz", keys), None);
    }
}
