//! Kubernetes resource quantities (`250m`, `0.5`, `2`, `256Mi`, `1Gi`, `512M`, `1e3`), parsed
//! exactly into integer millicores (CPU) or bytes (memory) so requests can be compared with the
//! operator's limits and rendered back in a canonical form.
//!
//! Grammar (the Kubernetes one, without a sign since a request is never negative):
//! `digits [ "." digits ] | "." digits`, then an optional suffix: binary `Ki Mi Gi Ti Pi Ei`,
//! decimal `n u m k M G T P E`, or an exponent `e<int>` / `E<int>`. Values that are not a whole
//! number of the unit (a CPU finer than `1m`, a memory size in fractions of a byte such as the
//! classic mistake `256m`) are rejected rather than silently rounded as Kubernetes would;
//! [`parse_measured`] reads what the cluster reports (usage, quota status), rounding up.

use std::fmt;

/// Inputs longer than this are rejected before any arithmetic, which keeps every mantissa
/// inside a `u128`.
pub const MAX_QUANTITY_LEN: usize = 32;

/// Why a quantity was rejected. Messages never echo the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "is not a Kubernetes quantity (e.g. 250m, 0.5, 2 for CPU; 256Mi, 1Gi, 512M for memory)"
    )]
    Syntax,
    #[error("must be greater than zero")]
    Zero,
    #[error("is finer than the smallest unit ({0})")]
    TooPrecise(&'static str),
    #[error("is too large")]
    TooLarge,
}

/// Which resource a quantity measures, which fixes its integer unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Millicores: `1` = 1000.
    Millicores,
    /// Bytes.
    Bytes,
}

/// Parses `s` into a whole, positive number of `unit`.
pub fn parse(s: &str, unit: Unit) -> Result<u64, QuantityError> {
    parse_with(s, unit, Rounding::Exact)
}

/// Parses a *measured* quantity, as the cluster reports one (metrics-server's `1203489n`
/// nanocores, `12560Ki`, a quota's `used` of `0`): zero is allowed and a fraction of the unit
/// rounds up, as apimachinery's `Quantity.MilliValue()`/`Value()` do (`ScaledValue` rounds
/// toward positive infinity, `staging/src/k8s.io/apimachinery/pkg/api/resource/quantity.go`).
pub fn parse_measured(s: &str, unit: Unit) -> Result<u64, QuantityError> {
    parse_with(s, unit, Rounding::Up)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Rounding {
    /// A request: zero and fractions of the unit are errors.
    Exact,
    /// A measurement: zero is fine, fractions round up.
    Up,
}

fn parse_with(s: &str, unit: Unit, rounding: Rounding) -> Result<u64, QuantityError> {
    if s.is_empty() || s.len() > MAX_QUANTITY_LEN || !s.is_ascii() {
        return Err(QuantityError::Syntax);
    }
    let b = s.as_bytes();
    let num_end = b
        .iter()
        .position(|c| !(c.is_ascii_digit() || *c == b'.'))
        .unwrap_or(b.len());
    let (num, suffix) = s.split_at(num_end);
    let (int_part, frac_part) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty())
        || frac_part.contains('.')
        || (num.contains('.') && frac_part.is_empty())
    {
        return Err(QuantityError::Syntax);
    }
    let (pow10, pow2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        exp => {
            let Some(e) = exp.strip_prefix(['e', 'E']) else {
                return Err(QuantityError::Syntax);
            };
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|c| c.is_ascii_digit())
            {
                return Err(QuantityError::Syntax);
            }
            (e.parse::<i32>().map_err(|_| QuantityError::Syntax)?, 0)
        }
    };
    // value = mantissa * 2^pow2 * 10^(pow10 + unit_shift - frac_len), computed exactly.
    let mut mantissa: u128 = 0;
    for c in int_part.bytes().chain(frac_part.bytes()) {
        mantissa = mantissa * 10 + u128::from(c - b'0');
    }
    if mantissa == 0 {
        return match rounding {
            Rounding::Exact => Err(QuantityError::Zero),
            Rounding::Up => Ok(0),
        };
    }
    let unit_shift = match unit {
        Unit::Millicores => 3,
        Unit::Bytes => 0,
    };
    let mut value = mantissa
        .checked_mul(1u128 << pow2)
        .ok_or(QuantityError::TooLarge)?;
    let exp = pow10 + unit_shift - frac_part.len() as i32;
    if exp >= 0 {
        for _ in 0..exp {
            value = value.checked_mul(10).ok_or(QuantityError::TooLarge)?;
        }
    } else {
        let mut remainder = false;
        for _ in 0..(-exp) {
            if !value.is_multiple_of(10) {
                if rounding == Rounding::Exact {
                    return Err(QuantityError::TooPrecise(match unit {
                        Unit::Millicores => "1m",
                        Unit::Bytes => "1 byte",
                    }));
                }
                remainder = true;
            }
            value /= 10;
        }
        if remainder {
            value += 1;
        }
    }
    u64::try_from(value).map_err(|_| QuantityError::TooLarge)
}

/// A CPU amount in canonical form: whole cores as `2`, otherwise millicores as `250m`.
pub fn format_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// A memory amount in canonical form: the largest binary suffix that divides it exactly
/// (`256Mi`, `1Gi`), else plain bytes.
pub fn format_memory(bytes: u64) -> String {
    const SUFFIXES: [(&str, u32); 6] = [
        ("Ei", 60),
        ("Pi", 50),
        ("Ti", 40),
        ("Gi", 30),
        ("Mi", 20),
        ("Ki", 10),
    ];
    for (suffix, shift) in SUFFIXES {
        let unit = 1u64 << shift;
        if bytes != 0 && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unit::Millicores => "millicores",
            Unit::Bytes => "bytes",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_quantities_allow_zero_and_round_fractions_up() {
        assert_eq!(parse_measured("1203489n", Unit::Millicores), Ok(2));
        assert_eq!(parse_measured("1000000n", Unit::Millicores), Ok(1));
        assert_eq!(parse_measured("0", Unit::Millicores), Ok(0));
        assert_eq!(parse_measured("0", Unit::Bytes), Ok(0));
        assert_eq!(parse_measured("12560Ki", Unit::Bytes), Ok(12_560 * 1024));
        assert_eq!(parse_measured("250m", Unit::Millicores), Ok(250));
        assert_eq!(parse_measured("1.5", Unit::Millicores), Ok(1500));
        assert_eq!(parse_measured("100m", Unit::Bytes), Ok(1));
        assert_eq!(
            parse_measured("12x", Unit::Bytes),
            Err(QuantityError::Syntax)
        );
        // Requests stay exact.
        assert!(parse("1203489n", Unit::Millicores).is_err());
        assert!(parse("0", Unit::Bytes).is_err());
    }

    #[test]
    fn cpu_quantities() {
        let cases = [
            ("250m", 250),
            ("0.5", 500),
            (".5", 500),
            ("2", 2000),
            ("1.25", 1250),
            ("1000m", 1000),
            ("1e-3", 1),
            ("1E0", 1000),
            ("2k", 2_000_000),
            ("500000u", 500),
            ("1000000n", 1),
        ];
        for (s, want) in cases {
            assert_eq!(parse(s, Unit::Millicores), Ok(want), "{s}");
        }
    }

    #[test]
    fn memory_quantities() {
        let cases = [
            ("256Mi", 256 << 20),
            ("1Gi", 1 << 30),
            ("1.5Gi", 3 << 29),
            ("512M", 512_000_000),
            ("128974848", 128_974_848),
            ("129e6", 129_000_000),
            ("1Ki", 1024),
            ("8Ei", 8 << 60),
        ];
        for (s, want) in cases {
            assert_eq!(parse(s, Unit::Bytes), Ok(want), "{s}");
        }
    }

    #[test]
    fn rejects_bad_quantities() {
        let syntax = [
            "", "m", "Mi", "-1", "+1", "1.", ".", "1..2", "1.2.3", "1 Gi", " 1Gi", "1Gi ", "1GI",
            "1gi", "1KB", "1K", "1e", "1e+", "1e1000", "0x10", "1_000", "١", "1\0", "NaN", "inf",
            "1i", "1mi",
        ];
        for s in syntax {
            assert_eq!(parse(s, Unit::Bytes), Err(QuantityError::Syntax), "{s:?}");
        }
        assert_eq!(
            parse(&"9".repeat(33), Unit::Bytes),
            Err(QuantityError::Syntax)
        );
        assert_eq!(parse("0", Unit::Millicores), Err(QuantityError::Zero));
        assert_eq!(parse("0.000", Unit::Bytes), Err(QuantityError::Zero));
        assert!(matches!(
            parse("256m", Unit::Bytes),
            Err(QuantityError::TooPrecise(_))
        ));
        assert!(matches!(
            parse("0.0001", Unit::Millicores),
            Err(QuantityError::TooPrecise(_))
        ));
        assert_eq!(parse("16Ei", Unit::Bytes), Err(QuantityError::TooLarge));
        assert_eq!(parse("1e999", Unit::Bytes), Err(QuantityError::TooLarge));
        assert_eq!(
            parse(&"9".repeat(32), Unit::Millicores),
            Err(QuantityError::TooLarge)
        );
    }

    #[test]
    fn random_amounts_round_trip_through_canonical_forms() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(9);
        for _ in 0..10_000 {
            let millis = rng.random_range(1..=u64::MAX / 1000);
            assert_eq!(parse(&format_cpu(millis), Unit::Millicores), Ok(millis));
            let bytes = match rng.random_range(0..3) {
                0 => rng.random_range(1..=u64::MAX),
                1 => rng.random_range(1..=1u64 << 40) << 20,
                _ => rng.random_range(1..=1u64 << 20),
            };
            assert_eq!(parse(&format_memory(bytes), Unit::Bytes), Ok(bytes));
        }
    }

    #[test]
    fn canonical_forms_round_trip() {
        for millis in [1, 250, 1000, 1500, 64000] {
            assert_eq!(parse(&format_cpu(millis), Unit::Millicores), Ok(millis));
        }
        for bytes in [1, 1000, 1024, 256 << 20, 3 << 29, 512_000_000] {
            assert_eq!(parse(&format_memory(bytes), Unit::Bytes), Ok(bytes));
        }
        assert_eq!(format_cpu(250), "250m");
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_memory(256 << 20), "256Mi");
        assert_eq!(format_memory(3 << 29), "1536Mi");
    }
}
