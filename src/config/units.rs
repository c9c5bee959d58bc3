//! Rates in bit/s, written the way operators and kubelet write them.
//!
//! Two spellings are accepted:
//! - Kubernetes quantities, as kubelet passes `kubernetes.io/*-bandwidth`
//!   annotations: `100M` = 100·10^6, `500k`, `1G`, `1Gi` = 2^30, `1.5G`, `1e9`,
//!   or a plain number of bit/s.
//! - tc-style bit rates: `100Mbit`, `1Gbit`, `64kbit`, `1Gibit`.
//!
//! Anything else is an error, with a hint for the usual mistakes: `100Mbps`
//! (tc reads `bps` as *bytes* per second), `100m` (milli in Kubernetes).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A rate in bit/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(pub u64);

/// Why a rate string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate `{input}`: {reason}")]
pub struct RateError {
    pub input: String,
    pub reason: String,
}

const DECIMAL: [(&str, u32); 6] = [("k", 1), ("M", 2), ("G", 3), ("T", 4), ("P", 5), ("E", 6)];
const BINARY: [(&str, u32); 6] = [
    ("Ki", 1),
    ("Mi", 2),
    ("Gi", 3),
    ("Ti", 4),
    ("Pi", 5),
    ("Ei", 6),
];

impl Rate {
    pub fn bits_per_second(self) -> u64 {
        self.0
    }

    /// Parses a rate; see the module documentation for the accepted forms.
    pub fn parse(input: &str) -> Result<Rate, RateError> {
        let err = |reason: &str| RateError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty; write e.g. \"100M\" or \"100Mbit\""));
        }
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(split);
        if number.is_empty() {
            return Err(err("must start with a number, e.g. \"100M\""));
        }
        // A Kubernetes quantity may carry a decimal exponent: `1e9`, `1.5E6`.
        // `E` alone is exa, so an exponent needs digits after it.
        let (suffix, exponent) = match suffix.strip_prefix(['e', 'E']) {
            Some(rest) if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) => {
                let e: u32 = rest.parse().map_err(|_| err("exponent too large"))?;
                ("", e)
            }
            _ => (suffix, 0),
        };
        let (unit, tc_style) = match suffix.strip_suffix("bit") {
            Some(unit) => (unit, true),
            None => (suffix, false),
        };
        let multiplier: f64 = if unit.is_empty() {
            1.0
        } else if let Some((_, p)) = DECIMAL
            .iter()
            .find(|(u, _)| *u == unit || (tc_style && u.eq_ignore_ascii_case(unit)))
        {
            1000f64.powi(*p as i32)
        } else if let Some((_, p)) = BINARY
            .iter()
            .find(|(u, _)| *u == unit || (tc_style && u.eq_ignore_ascii_case(unit)))
        {
            1024f64.powi(*p as i32)
        } else if suffix.ends_with("bps") || suffix.ends_with("Bps") {
            return Err(err(
                "`bps` is bytes per second to tc and ambiguous here; write bits: \"100Mbit\" or \"100M\"",
            ));
        } else if unit == "m" {
            return Err(err(
                "`m` means milli (1/1000) in a Kubernetes quantity; for mega write \"M\"",
            ));
        } else {
            return Err(err(
                "unknown unit; use k, M, G, T (powers of 1000), Ki, Mi, Gi, Ti (powers of 1024), optionally followed by `bit`",
            ));
        };
        let digits: String = number.chars().filter(|c| *c != '_').collect();
        if digits.matches('.').count() > 1 || digits.starts_with('.') || digits.ends_with('.') {
            return Err(err("malformed number"));
        }
        let value: f64 = digits.parse().map_err(|_| err("malformed number"))?;
        let bits = value * multiplier * 10f64.powi(exponent.min(400) as i32);
        if !bits.is_finite() || bits >= u64::MAX as f64 {
            return Err(err("too large"));
        }
        let bits = bits.round() as u64;
        if bits == 0 {
            return Err(err("a rate must be at least 1 bit/s"));
        }
        Ok(Rate(bits))
    }
}

impl fmt::Display for Rate {
    /// The shortest exact tc-style spelling: `100Mbit`, `1Gbit`, `1500bit`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, power) in DECIMAL.iter().rev() {
            let m = 1000u64.pow(*power);
            if self.0 >= m && self.0 % m == 0 {
                return write!(f, "{}{}bit", self.0 / m, unit);
            }
        }
        write!(f, "{}bit", self.0)
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bits(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bits(0) => Err(serde::de::Error::custom("a rate must be at least 1 bit/s")),
            Raw::Bits(b) => Ok(Rate(b)),
            Raw::Text(t) => Rate::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl JsonSchema for Rate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Rate".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A rate in bit/s: a Kubernetes quantity (\"100M\" = 100*10^6, \"500k\", \"1Gi\" = 2^30) or tc-style (\"100Mbit\", \"1Gbit\"), or an integer number of bit/s.",
            "type": ["string", "integer"],
            "minimum": 1,
            "format": "rate",
            "examples": ["100M", "1Gbit", "500k"]
        })
    }
}

/// A number of bits (a burst), written like a rate: `"1Mbit"`, `"500k"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bits(pub u64);

impl Serialize for Bits {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Rate(self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Bits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bits, D::Error> {
        Rate::deserialize(d).map(|r| Bits(r.0))
    }
}

impl JsonSchema for Bits {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Bits".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A number of bits, written like a rate: \"1Mbit\", \"500k\", \"64Ki\", or an integer.",
            "type": ["string", "integer"],
            "minimum": 1,
            "format": "rate",
            "examples": ["1Mbit", "512k"]
        })
    }
}

/// A drop horizon: how long a packet may wait; `"2s"`, `"500ms"`, `"1m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Horizon(pub std::time::Duration);

/// A marking threshold: how long a packet may wait before it is CE-marked;
/// `"1ms"`, `"500us"`, or `"off"` (zero: never marked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Delay(pub std::time::Duration);

/// `<integer><unit>` with a unit of `units` (us, ms, s, m), within
/// `[min, max]`; `what` and `example` word the errors.
fn parse_duration(
    input: &str,
    units: &[&str],
    min: std::time::Duration,
    max: std::time::Duration,
    example: &str,
) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let s = input.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("invalid duration `{input}`: write e.g. {example}"))?;
    let d = match unit {
        "us" if units.contains(&"us") => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => {
            return Err(format!(
                "invalid duration `{input}`: the unit is {}",
                units.join(", ")
            ))
        }
    };
    if d < min || d > max {
        return Err(format!(
            "invalid duration `{input}`: between {} and {}",
            show(min),
            show(max)
        ));
    }
    Ok(d)
}

/// A duration in the largest unit that shows it whole.
fn show(d: std::time::Duration) -> String {
    let us = d.as_micros();
    match us {
        _ if us % 1_000_000 == 0 => format!("{}s", us / 1_000_000),
        _ if us % 1_000 == 0 => format!("{}ms", us / 1_000),
        _ => format!("{us}us"),
    }
}

impl Horizon {
    pub fn parse(input: &str) -> Result<Horizon, String> {
        use std::time::Duration;
        parse_duration(
            input,
            &["ms", "s", "m"],
            Duration::from_millis(1),
            Duration::from_secs(60),
            "\"2s\" or \"500ms\"",
        )
        .map(Horizon)
    }
}

impl Delay {
    pub fn parse(input: &str) -> Result<Delay, String> {
        use std::time::Duration;
        if input.trim() == "off" {
            return Ok(Delay(Duration::ZERO));
        }
        parse_duration(
            input,
            &["us", "ms", "s"],
            Duration::from_micros(10),
            Duration::from_secs(1),
            "\"1ms\" or \"500us\"",
        )
        .map(Delay)
    }
}

impl Serialize for Horizon {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}ms", self.0.as_millis()))
    }
}

impl Serialize for Delay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_zero() {
            return s.serialize_str("off");
        }
        s.collect_str(&show(self.0))
    }
}

impl<'de> Deserialize<'de> for Horizon {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Horizon, D::Error> {
        let s = String::deserialize(d)?;
        Horizon::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Delay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Delay, D::Error> {
        let s = String::deserialize(d)?;
        Delay::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Horizon {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Horizon".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration from 1ms to 60s: \"2s\", \"500ms\".",
            "type": "string",
            "format": "horizon",
            "examples": ["2s", "500ms"]
        })
    }
}

impl JsonSchema for Delay {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Delay".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration from 10us to 1s: \"1ms\", \"500us\"; or \"off\".",
            "type": "string",
            "format": "delay",
            "examples": ["1ms", "500us", "off"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> u64 {
        Rate::parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .bits_per_second()
    }

    #[test]
    fn kubernetes_quantities_are_decimal_or_binary() {
        assert_eq!(ok("100M"), 100_000_000);
        assert_eq!(ok("1G"), 1_000_000_000);
        assert_eq!(ok("500k"), 500_000);
        assert_eq!(ok("1Gi"), 1 << 30);
        assert_eq!(ok("10Mi"), 10 << 20);
        assert_eq!(ok("1.5G"), 1_500_000_000);
        assert_eq!(ok("1e9"), 1_000_000_000);
        assert_eq!(ok("2E"), 2_000_000_000_000_000_000);
        assert_eq!(ok("12345"), 12345);
    }

    #[test]
    fn tc_style_bit_rates() {
        assert_eq!(ok("100Mbit"), 100_000_000);
        assert_eq!(ok("1Gbit"), 1_000_000_000);
        assert_eq!(ok("64kbit"), 64_000);
        assert_eq!(ok("100mbit"), 100_000_000);
        assert_eq!(ok("1Gibit"), 1 << 30);
        assert_eq!(ok("800bit"), 800);
    }

    #[test]
    fn refuses_ambiguous_and_malformed_rates() {
        for bad in [
            "",
            "M",
            "100Mbps",
            "100MBps",
            "100m",
            "100X",
            "1.2.3G",
            ".5G",
            "0",
            "0M",
            "-1M",
            "100 M bit",
            "1e99999",
            "99999999999E",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let e = Rate::parse("100Mbps").unwrap_err();
        assert!(e.reason.contains("bytes"), "{e}");
        let e = Rate::parse("100m").unwrap_err();
        assert!(e.reason.contains("milli"), "{e}");
    }

    #[test]
    fn horizons_take_ms_s_and_m_up_to_a_minute() {
        assert_eq!(Horizon::parse("2s").unwrap().0.as_millis(), 2000);
        assert_eq!(Horizon::parse("500ms").unwrap().0.as_millis(), 500);
        assert_eq!(Horizon::parse("1m").unwrap().0.as_secs(), 60);
        for bad in ["", "2", "0s", "2h", "61s", "1.5s", "s"] {
            assert!(Horizon::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn delays_take_us_ms_and_s_from_10us_to_a_second() {
        assert_eq!(Delay::parse("500us").unwrap().0.as_micros(), 500);
        assert_eq!(Delay::parse("2ms").unwrap().0.as_micros(), 2000);
        assert_eq!(Delay::parse("1s").unwrap().0.as_micros(), 1_000_000);
        for bad in ["", "1", "5us", "2s", "1m", "1.5ms", "us"] {
            assert!(Delay::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Horizon::parse("500us").is_err());
        assert_eq!(Delay::parse("off").unwrap().0, std::time::Duration::ZERO);
        assert_eq!(
            serde_json::to_string(&Delay::parse("off").unwrap()).unwrap(),
            "\"off\""
        );
        assert_eq!(
            serde_json::to_string(&Delay::parse("1500us").unwrap()).unwrap(),
            "\"1500us\""
        );
        assert_eq!(
            serde_json::to_string(&Delay::parse("3000us").unwrap()).unwrap(),
            "\"3ms\""
        );
    }

    #[test]
    fn display_round_trips() {
        for s in ["100Mbit", "1Gbit", "1500bit", "64kbit"] {
            assert_eq!(Rate::parse(s).unwrap().to_string(), s);
        }
        let r = Rate(1 << 30);
        assert_eq!(Rate::parse(&r.to_string()).unwrap(), r);
    }
}
