//! Signal names and numbers as `berth-runc kill` takes them: `KILL`, `SIGKILL`,
//! `kill` and `9` all mean the same signal, as they do for runc.

use nix::sys::signal::Signal;

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("unknown signal {0:?}; use a name such as SIGTERM or TERM, or a number such as 15")]
pub struct UnknownSignal(pub String);

pub fn parse(text: &str) -> Result<Signal, UnknownSignal> {
    let unknown = || UnknownSignal(text.to_owned());
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| unknown());
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse().map_err(|_| unknown())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_and_numbers() {
        for text in ["KILL", "SIGKILL", "kill", "9"] {
            assert_eq!(parse(text), Ok(Signal::SIGKILL), "{text}");
        }
        assert_eq!(parse("term"), Ok(Signal::SIGTERM));
        assert!(parse("SIGNOPE")
            .unwrap_err()
            .to_string()
            .contains("\"SIGNOPE\""));
        assert!(parse("0").is_err());
        assert!(parse("65").is_err());
    }

    proptest! {
        #[test]
        fn every_signal_round_trips_by_name_and_number(index in 0usize..31) {
            let signal = Signal::iterator().nth(index).unwrap();
            prop_assert_eq!(parse(signal.as_str()), Ok(signal));
            prop_assert_eq!(parse(&(signal as i32).to_string()), Ok(signal));
            prop_assert_eq!(parse(&signal.as_str()[3..].to_lowercase()), Ok(signal));
        }

        #[test]
        fn garbage_never_panics(text in ".{0,12}") {
            let _ = parse(&text);
        }
    }
}
