//! The serde forms (feature `serde`): the exact JSON of each type, round trips, and that
//! deserialising refuses, with a message naming the problem, everything a segment read
//! refuses.

use std::fmt::Debug;

use clockbound_shm::{
    AnySnapshot, ClockErrorBound, ClockErrorBoundV3, ClockStatus, LayoutVersion, TimeWindow,
    Timespec,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Serialises `value`, checks the JSON is exactly `expected`, and that it reads back equal.
fn assert_form<T>(value: &T, expected: Value)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let json = serde_json::to_value(value).unwrap();
    assert_eq!(json, expected, "{value:?}");
    let text = serde_json::to_string(value).unwrap();
    assert_eq!(serde_json::from_str::<T>(&text).unwrap(), *value, "{text}");
}

/// Deserialising `json` as `T` fails, with a message containing `needle`.
fn assert_refused<T: DeserializeOwned + Debug>(json: Value, needle: &str) {
    let text = json.to_string();
    match serde_json::from_str::<T>(&text) {
        Ok(value) => panic!("{text} was accepted as {value:?}"),
        Err(e) => assert!(
            e.to_string().contains(needle),
            "{text}: error {e:?} does not mention {needle:?}"
        ),
    }
}

fn v2() -> ClockErrorBound {
    ClockErrorBound::builder()
        .as_of(Timespec::new(1_000, 5))
        .void_after(Timespec::new(2_000, 6))
        .bound_nsec(10_000)
        .disruption_marker(7)
        .max_drift_ppb(1_000)
        .clock_status(ClockStatus::FreeRunning)
        .clock_disruption_support_enabled(true)
        .build()
}

fn v2_json() -> Value {
    json!({
        "layout": 2,
        "as_of": { "sec": 1000, "nsec": 5 },
        "void_after": { "sec": 2000, "nsec": 6 },
        "bound_nsec": 10000,
        "disruption_marker": 7,
        "max_drift_ppb": 1000,
        "clock_status": "FreeRunning",
        "clock_disruption_support_enabled": true
    })
}

fn v3() -> ClockErrorBoundV3 {
    ClockErrorBoundV3::builder()
        .as_of_tsc(u64::MAX - 1)
        .as_of(Timespec::new(1_700_000_000, 2))
        .void_after(Timespec::new(1_700_001_000, 3))
        .period_frac(0x8000_0000_0000_0011)
        .period_shift(29)
        .period_err_frac(u64::MAX)
        .period_err_shift(63)
        .bound_nsec(5)
        .disruption_marker(u64::MAX)
        .max_drift_ppb(999_999_999)
        .clock_status(ClockStatus::Synchronized)
        .clock_disruption_support_enabled(false)
        .build()
}

fn v3_json() -> Value {
    json!({
        "layout": 3,
        "as_of_tsc": u64::MAX - 1,
        "as_of": { "sec": 1_700_000_000i64, "nsec": 2 },
        "void_after": { "sec": 1_700_001_000i64, "nsec": 3 },
        "period_frac": 0x8000_0000_0000_0011u64,
        "period_shift": 29,
        "period_err_frac": u64::MAX,
        "period_err_shift": 63,
        "bound_nsec": 5,
        "disruption_marker": u64::MAX,
        "max_drift_ppb": 999_999_999,
        "clock_status": "Synchronized",
        "clock_disruption_support_enabled": false
    })
}

/// `base` with `field` set to `value`.
fn with(mut base: Value, field: &str, value: Value) -> Value {
    base[field] = value;
    base
}

/// `base` without `field`.
fn without(mut base: Value, field: &str) -> Value {
    base.as_object_mut().unwrap().remove(field);
    base
}

#[test]
fn timespec_form() {
    assert_form(&Timespec::new(12, 345), json!({ "sec": 12, "nsec": 345 }));
    // Before the epoch: seconds down, nanoseconds up, as the value holds them.
    assert_form(
        &Timespec::new(0, -500_000_000),
        json!({ "sec": -1, "nsec": 500_000_000 }),
    );
    assert_form(
        &Timespec::MAX,
        json!({ "sec": i64::MAX, "nsec": 999_999_999 }),
    );
    assert_form(&Timespec::MIN, json!({ "sec": i64::MIN, "nsec": 0 }));
}

#[test]
fn timespec_refuses_unnormalised_or_misspelt_input() {
    for nsec in [1_000_000_000i64, -1, i64::MAX] {
        assert_refused::<Timespec>(
            json!({ "sec": 1, "nsec": nsec }),
            &format!("invalid Timespec: nsec is {nsec}, expected 0 to 999999999"),
        );
    }
    assert_refused::<Timespec>(json!({ "sec": 1 }), "missing field `nsec`");
    assert_refused::<Timespec>(
        json!({ "sec": 1, "nsec": 0, "nsecs": 0 }),
        "unknown field `nsecs`",
    );
    assert_refused::<Timespec>(json!({ "sec": 1.5, "nsec": 0 }), "invalid type");
    assert_refused::<Timespec>(json!("1.000000000"), "invalid type");
}

#[test]
fn clock_status_form() {
    for (status, name) in [
        (ClockStatus::Unknown, "Unknown"),
        (ClockStatus::Synchronized, "Synchronized"),
        (ClockStatus::FreeRunning, "FreeRunning"),
        (ClockStatus::Disrupted, "Disrupted"),
    ] {
        assert_form(&status, json!(name));
    }
    assert_refused::<ClockStatus>(json!("synchronized"), "unknown variant `synchronized`");
    // The wire value is not the serde form.
    assert_refused::<ClockStatus>(
        json!(1),
        r#"invalid type: integer `1`, expected a clock status name: "Unknown", "Synchronized", "FreeRunning" or "Disrupted""#,
    );
}

#[test]
fn layout_version_form() {
    assert_form(&LayoutVersion::V2, json!(2));
    assert_form(&LayoutVersion::V3, json!(3));
    for other in [0, 1, 4, 0x0303] {
        assert_refused::<LayoutVersion>(
            json!(other),
            &format!("layout {other} is not one this crate reads, expected 2 or 3"),
        );
    }
    assert_refused::<LayoutVersion>(json!("2"), "invalid type");
}

#[test]
fn time_window_form() {
    let w = TimeWindow {
        earliest: Timespec::new(10, 999_999_000),
        latest: Timespec::new(11, 1_000),
        clock_status: ClockStatus::Synchronized,
    };
    assert_form(
        &w,
        json!({
            "earliest": { "sec": 10, "nsec": 999_999_000 },
            "latest": { "sec": 11, "nsec": 1000 },
            "clock_status": "Synchronized"
        }),
    );
    // A point window is a window.
    let point = TimeWindow {
        earliest: w.latest,
        ..w
    };
    assert_form(&point, serde_json::to_value(point).unwrap());
}

#[test]
fn time_window_refuses_an_inverted_or_invalid_window() {
    let good = serde_json::to_value(TimeWindow {
        earliest: Timespec::new(10, 0),
        latest: Timespec::new(11, 0),
        clock_status: ClockStatus::Unknown,
    })
    .unwrap();
    assert_refused::<TimeWindow>(
        with(good.clone(), "earliest", json!({ "sec": 11, "nsec": 1 })),
        "invalid TimeWindow: earliest 11.000000001 is after latest 11.000000000",
    );
    assert_refused::<TimeWindow>(
        with(good.clone(), "latest", json!({ "sec": 11, "nsec": -1 })),
        "nsec is -1",
    );
    assert_refused::<TimeWindow>(
        with(good.clone(), "clock_status", json!("Trusted")),
        "unknown variant `Trusted`",
    );
    assert_refused::<TimeWindow>(without(good, "clock_status"), "missing field");
}

#[test]
fn clock_error_bound_form() {
    assert_form(&v2(), v2_json());
    // Field order is the wire order, after the layout.
    let text = serde_json::to_string(&v2()).unwrap();
    assert_eq!(
        text,
        r#"{"layout":2,"as_of":{"sec":1000,"nsec":5},"void_after":{"sec":2000,"nsec":6},"bound_nsec":10000,"disruption_marker":7,"max_drift_ppb":1000,"clock_status":"FreeRunning","clock_disruption_support_enabled":true}"#
    );
    // Every status and both flags.
    for status in [
        ClockStatus::Unknown,
        ClockStatus::Synchronized,
        ClockStatus::FreeRunning,
        ClockStatus::Disrupted,
    ] {
        for flag in [false, true] {
            let s = ClockErrorBound::builder()
                .as_of(Timespec::ZERO)
                .void_after(Timespec::ZERO)
                .clock_status(status)
                .clock_disruption_support_enabled(flag)
                .build();
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<ClockErrorBound>(&json).unwrap(), s);
        }
    }
}

#[test]
fn clock_error_bound_refuses_what_a_segment_read_refuses() {
    let good = v2_json();
    let refused = |json: Value, needle: &str| assert_refused::<ClockErrorBound>(json, needle);
    refused(
        with(good.clone(), "bound_nsec", json!(-1)),
        "invalid ClockErrorBound: bound_nsec is -1, expected 0 or more",
    );
    refused(
        with(good.clone(), "max_drift_ppb", json!(1_000_000_000)),
        "invalid ClockErrorBound: max_drift_ppb is 1000000000, expected below 1000000000",
    );
    refused(
        with(
            good.clone(),
            "as_of",
            json!({ "sec": 1, "nsec": 1_000_000_000 }),
        ),
        "invalid ClockErrorBound: as_of has 1000000000 nanoseconds, expected 0 to 999999999",
    );
    refused(
        with(good.clone(), "void_after", json!({ "sec": 1, "nsec": -1 })),
        "invalid ClockErrorBound: void_after has -1 nanoseconds",
    );
    refused(
        with(good.clone(), "clock_status", json!(4)),
        "invalid type: integer `4`, expected a clock status name",
    );
    refused(
        with(good.clone(), "clock_disruption_support_enabled", json!(2)),
        "invalid type",
    );
    refused(
        with(good.clone(), "max_drift_ppb", json!(-1)),
        "invalid value",
    );
    refused(without(good.clone(), "layout"), "missing field `layout`");
    refused(
        without(good.clone(), "bound_nsec"),
        "missing field `bound_nsec`",
    );
    refused(
        with(good.clone(), "layout", json!(3)),
        "invalid ClockErrorBound: layout is 3, expected 2",
    );
    refused(
        with(good.clone(), "period_frac", json!(1)),
        "unknown field `period_frac`",
    );
    refused(
        with(good, "padding", json!([0, 0, 0, 0, 0, 0, 0])),
        "unknown field `padding`",
    );
}

#[test]
fn clock_error_bound_v3_form() {
    assert_form(&v3(), v3_json());
    // Field order is the wire order, after the layout.
    let text = serde_json::to_string(&v3()).unwrap();
    assert_eq!(
        text,
        r#"{"layout":3,"as_of_tsc":18446744073709551614,"as_of":{"sec":1700000000,"nsec":2},"void_after":{"sec":1700001000,"nsec":3},"period_frac":9223372036854775825,"period_err_frac":18446744073709551615,"bound_nsec":5,"disruption_marker":18446744073709551615,"max_drift_ppb":999999999,"clock_status":"Synchronized","clock_disruption_support_enabled":false,"period_shift":29,"period_err_shift":63}"#
    );
    // An untrusted snapshot may have no period, as in a segment.
    let no_period = ClockErrorBoundV3::builder()
        .clock_status(ClockStatus::Unknown)
        .build();
    let json = serde_json::to_string(&no_period).unwrap();
    assert_eq!(
        serde_json::from_str::<ClockErrorBoundV3>(&json).unwrap(),
        no_period
    );
}

#[test]
fn clock_error_bound_v3_refuses_what_a_segment_read_refuses() {
    let good = v3_json();
    let refused = |json: Value, needle: &str| assert_refused::<ClockErrorBoundV3>(json, needle);
    refused(
        with(good.clone(), "period_shift", json!(64)),
        "invalid ClockErrorBoundV3: period_shift is 64, expected 0 to 63",
    );
    refused(
        with(good.clone(), "period_err_shift", json!(255)),
        "invalid ClockErrorBoundV3: period_err_shift is 255, expected 0 to 63",
    );
    refused(
        with(good.clone(), "period_shift", json!(256)),
        "invalid value",
    );
    refused(
        with(good.clone(), "period_frac", json!(0)),
        "invalid ClockErrorBoundV3: period_frac is 0 with clock_status 1",
    );
    refused(
        with(good.clone(), "bound_nsec", json!(i64::MIN)),
        "bound_nsec is -9223372036854775808, expected 0 or more",
    );
    refused(
        with(good.clone(), "max_drift_ppb", json!(u32::MAX)),
        "max_drift_ppb is 4294967295, expected below 1000000000",
    );
    refused(
        with(
            good.clone(),
            "as_of",
            json!({ "sec": 0, "nsec": 1_000_000_000 }),
        ),
        "invalid ClockErrorBoundV3: as_of has 1000000000 nanoseconds",
    );
    for field in [
        "as_of_tsc",
        "period_frac",
        "period_shift",
        "period_err_frac",
        "period_err_shift",
    ] {
        refused(
            without(good.clone(), field),
            &format!("missing field `{field}`"),
        );
    }
    refused(
        with(good.clone(), "layout", json!(2)),
        "invalid ClockErrorBoundV3: layout is 2, expected 3",
    );
    refused(
        with(good, "layout", json!(4)),
        "layout 4 is not one this crate reads",
    );
    // A layout 2 snapshot is not a layout 3 one.
    refused(v2_json(), "missing field `as_of_tsc`");
}

#[test]
fn any_snapshot_form() {
    assert_form(&AnySnapshot::V2(v2()), v2_json());
    assert_form(&AnySnapshot::V3(v3()), v3_json());
    // Validated as the type `layout` names.
    assert_refused::<AnySnapshot>(
        with(v2_json(), "bound_nsec", json!(-5)),
        "invalid ClockErrorBound: bound_nsec is -5",
    );
    assert_refused::<AnySnapshot>(without(v3_json(), "as_of_tsc"), "missing field `as_of_tsc`");
    assert_refused::<AnySnapshot>(
        with(v2_json(), "as_of_tsc", json!(1)),
        "as_of_tsc is a layout 3 field",
    );
    assert_refused::<AnySnapshot>(without(v2_json(), "layout"), "missing field `layout`");
}

#[test]
fn a_snapshot_read_from_a_segment_round_trips() {
    use clockbound_shm::{SharedClockBound, ShmReader, ShmWriter};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    // Without the disruption flag: no VMClock page needed.
    let written = ClockErrorBound::builder()
        .as_of(Timespec::monotonic_coarse_now())
        .void_after(
            Timespec::monotonic_coarse_now().saturating_add(std::time::Duration::from_secs(1000)),
        )
        .bound_nsec(10_000)
        .disruption_marker(7)
        .max_drift_ppb(1_000)
        .clock_status(ClockStatus::Synchronized)
        .build();
    ShmWriter::new(&path).unwrap().write(&written);
    let read = *ShmReader::open(&path).unwrap().snapshot().unwrap();
    let json = serde_json::to_string(&read).unwrap();
    assert_eq!(read, written);
    assert_eq!(
        serde_json::from_str::<ClockErrorBound>(&json).unwrap(),
        read
    );
    let any = SharedClockBound::open(&path).unwrap().snapshot().unwrap();
    let json = serde_json::to_string(&any).unwrap();
    assert_eq!(serde_json::from_str::<AnySnapshot>(&json).unwrap(), any);
}
