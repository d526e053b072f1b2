//! Mobile numbers as the Kaizala dialect identifies members (contract §8 "Phone numbers").
//!
//! `+` then digits; spaces, hyphens, dots and parentheses are removed; the digits are
//! kept exactly as given (no trunk zero is dropped). The check is libphonenumber's
//! *possible-number* test — a known country calling code and a national length that
//! numbers of that code can have (full or local-only) — never the full validity test,
//! because real clients use test numbers such as `+911199999999`. The `phonenumber`
//! crate's metadata provides the lengths; its own possible-number function is private,
//! so the length comparison is done here, as libphonenumber's `isPossibleNumber` does
//! it for an unknown number type.

use std::fmt;

use phonenumber::metadata::DATABASE;

/// E.164 allows at most 15 digits.
pub const MAX_DIGITS: usize = 15;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PhoneError {
    MissingPlus,
    NotDigits,
    UnknownCountryCode,
    ImpossibleLength,
}

impl fmt::Display for PhoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PhoneError::MissingPlus => "mobile number must start with '+' and the country code",
            PhoneError::NotDigits => "mobile number must contain only digits after '+'",
            PhoneError::UnknownCountryCode => "mobile number has an unknown country calling code",
            PhoneError::ImpossibleLength => "mobile number has a length no number of its country can have",
        })
    }
}

impl std::error::Error for PhoneError {}

/// Normalises `input` to `+<digits>` or says why it is not a possible number.
pub fn normalize_mobile_number(input: &str) -> Result<String, PhoneError> {
    let rest = input.trim().strip_prefix('+').ok_or(PhoneError::MissingPlus)?;
    let digits: String = rest.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')')).collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PhoneError::NotDigits);
    }
    if digits.len() > MAX_DIGITS {
        return Err(PhoneError::ImpossibleLength);
    }
    let mut known_code = false;
    for code_len in 1..=3.min(digits.len()) {
        let Ok(code) = digits[..code_len].parse::<u16>() else { continue };
        let Some(regions) = DATABASE.by_code(&code) else { continue };
        known_code = true;
        let national = &digits[code_len..];
        let possible = regions.iter().any(|meta| {
            // As libphonenumber parses, a national (trunk) prefix written after the
            // country code does not count toward the length; the digits stay as given.
            let national_len = match meta.national_prefix() {
                Some(p) if !p.is_empty() && national.starts_with(p) && national.len() > p.len() + 1 => {
                    [national.len() as u16, (national.len() - p.len()) as u16]
                }
                _ => [national.len() as u16; 2],
            };
            let d = meta.descriptors();
            let typed =
                [d.fixed_line(), d.mobile(), d.toll_free(), d.premium_rate(), d.shared_cost(), d.personal_number()];
            std::iter::once(d.general()).chain(typed.into_iter().flatten()).any(|desc| {
                national_len
                    .iter()
                    .any(|n| desc.possible_length().contains(n) || desc.possible_local_length().contains(n))
            })
        });
        if possible {
            return Ok(format!("+{digits}"));
        }
        // Calling codes are prefix-free: no longer code can also match.
        break;
    }
    Err(if known_code { PhoneError::ImpossibleLength } else { PhoneError::UnknownCountryCode })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_keeps_digits() {
        assert_eq!(normalize_mobile_number("+911199999999"), Ok("+911199999999".into()));
        assert_eq!(normalize_mobile_number(" +91 11 9999-9999 "), Ok("+911199999999".into()));
        assert_eq!(normalize_mobile_number("+1 (415) 555.2671"), Ok("+14155552671".into()));
        assert_eq!(normalize_mobile_number("+44 020 7946 0018"), Ok("+4402079460018".into()));
        assert_eq!(normalize_mobile_number("+919885098850"), Ok("+919885098850".into()));
    }

    #[test]
    fn refuses_impossible_numbers() {
        assert_eq!(normalize_mobile_number("911199999999"), Err(PhoneError::MissingPlus));
        assert_eq!(normalize_mobile_number("+91abc"), Err(PhoneError::NotDigits));
        assert_eq!(normalize_mobile_number("+"), Err(PhoneError::NotDigits));
        assert_eq!(normalize_mobile_number("+999123"), Err(PhoneError::UnknownCountryCode));
        assert_eq!(normalize_mobile_number("+9112"), Err(PhoneError::ImpossibleLength));
        assert_eq!(normalize_mobile_number("+9111999999999999"), Err(PhoneError::ImpossibleLength));
    }
}
