//! The command line's compound values: an exponential rate `BASE,FACTOR` and template
//! parameters `K=V`.
//!
//! Owns: their syntax and the ranges AWS IoT accepts for them. Must not know: the SDK.

use crate::error::OpsError;
use std::collections::BTreeMap;

/// `BASE,FACTOR`: base rate per minute (1–1000) and increment factor (1.1–5).
pub fn parse_exponential(spec: &str) -> Result<(i32, f64), OpsError> {
    let bad = || {
        OpsError::Input(format!(
            "--exponential takes BASE,FACTOR with BASE 1 to 1000 and FACTOR 1.1 to 5, got {spec:?}"
        ))
    };
    let (base, factor) = spec.split_once(',').ok_or_else(bad)?;
    let base: i32 = base.trim().parse().map_err(|_| bad())?;
    let factor: f64 = factor.trim().parse().map_err(|_| bad())?;
    if !(1..=1000).contains(&base) || !(1.1..=5.0).contains(&factor) {
        return Err(bad());
    }
    Ok((base, factor))
}

/// `K=V` pairs, each key once.
pub fn parse_params(params: &[String]) -> Result<BTreeMap<String, String>, OpsError> {
    let mut out = BTreeMap::new();
    for p in params {
        let Some((k, v)) = p.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(OpsError::Input(format!("--param takes K=V, got {p:?}")));
        };
        if out.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(OpsError::Input(format!("--param {k} given twice")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_rates_in_range() {
        assert_eq!(parse_exponential("10, 2.5").ok(), Some((10, 2.5)));
        for bad in ["10", "0,2", "10,1.0", "10,6", "x,2", "1001,2"] {
            assert!(parse_exponential(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn params_are_pairs_given_once() {
        let p = parse_params(&["a=1".into(), "b=x=y".into()]).ok();
        assert_eq!(
            p,
            Some([("a".into(), "1".into()), ("b".into(), "x=y".into())].into())
        );
        assert!(parse_params(&["=1".into()]).is_err());
        assert!(parse_params(&["a".into()]).is_err());
        assert!(parse_params(&["a=1".into(), "a=2".into()]).is_err());
    }
}
