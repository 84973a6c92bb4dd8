//! What Atlas's shared tiers (M0, Flex) say through the wire: their proxy refuses some
//! commands and every write past the space quota with `code: 8000, codeName: "AtlasError"`
//! and an `errmsg` such as `(AtlasError) you are over your space quota, using 33 MB of
//! 512 MB`. These turn those replies into sentences that say what to do.

/// Atlas's error code for what its proxy refuses.
pub const ATLAS_ERROR: i32 = 8000;

/// The documented storage of the tiers, named in the fix.
pub use crate::world::atlas::TIER_STORAGE as TIERS;

/// `(used MB, quota MB)` when `text` is Atlas's over-quota refusal.
pub fn over_quota(text: &str) -> Option<(u64, u64)> {
    let lower = text.to_ascii_lowercase();
    let rest = lower.split("space quota").nth(1)?;
    let rest = rest.split("using").nth(1)?;
    let mut numbers = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().ok());
    let used = numbers.next()??;
    let quota = numbers.next()??;
    Some((used, quota))
}

/// The sentence for an Atlas refusal (`code` 8000 or `(AtlasError)` in the text), if it is one.
pub fn problem(code: Option<i32>, text: &str) -> Option<String> {
    let atlas = code == Some(ATLAS_ERROR) || text.contains("(AtlasError)");
    if !atlas {
        return None;
    }
    if let Some((used, quota)) = over_quota(text) {
        return Some(format!(
            "Atlas refused the write: the cluster is over its space quota (using {used} MB of {quota} MB); move the cluster to a tier that holds the data ({TIERS}), or delete what the app no longer needs on the source"
        ));
    }
    let said = text.split("(AtlasError)").last().unwrap_or(text).trim();
    Some(format!(
        "Atlas refused a command this cluster's tier does not allow (M0 and Flex refuse some): {said}"
    ))
}

/// The copy's refusal when Atlas is full: the quota, what the source holds, the fix.
pub fn quota_refusal(used: u64, quota: u64, source_bytes: u64, unlocked: bool) -> String {
    let frozen = if unlocked {
        "the source was unlocked and nothing was deployed"
    } else {
        "nothing was frozen or deployed"
    };
    format!(
        "Atlas is full: the cluster's space quota is {quota} MB (using {used} MB) and the source holds {} of documents, before indexes; {frozen}. Move the cluster to a tier that holds the data ({TIERS}), or delete what the app no longer needs on the source",
        crate::units::bytes(source_bytes as i64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_is_read_from_atlas_words() {
        assert_eq!(
            over_quota("(AtlasError) you are over your space quota, using 33 MB of 20 MB"),
            Some((33, 20))
        );
        assert_eq!(over_quota("AtlasError (code 8000): something else"), None);
        let s = problem(
            Some(8000),
            "(AtlasError) you are over your space quota, using 513 MB of 512 MB",
        )
        .unwrap();
        assert!(
            s.contains("using 513 MB of 512 MB") && s.contains("Flex 5 GB"),
            "{s}"
        );
        let s = problem(
            Some(8000),
            "(AtlasError) hostInfo is not allowed in this atlas tier",
        )
        .unwrap();
        assert!(
            s.ends_with("hostInfo is not allowed in this atlas tier"),
            "{s}"
        );
        assert_eq!(problem(Some(13), "not authorized"), None);
    }
}
