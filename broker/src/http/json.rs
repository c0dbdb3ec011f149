//! Where serde's JSON reading differs from JSON Schema, which the API's OpenAPI document
//! uses, these helpers side with the schema:
//!
//! - serde's derived structs also accept an array of their fields in order
//!   (`["orders", 3]` as a topic); the schema says object, so [`object`] takes objects
//!   only.
//! - JSON Schema counts `3.0` as an integer, serde does not; [`integer`] takes any
//!   number with no fraction that fits the field's type.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Unexpected, Visitor};

/// Reads a `T` (a derived struct) from a JSON object only.
pub fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ObjectVisitor<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
        type Value = T;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map))
        }
    }

    deserializer.deserialize_map(ObjectVisitor(PhantomData))
}

/// A request body that must be a JSON object.
#[derive(Debug, Clone)]
pub struct ObjectBody<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectBody<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        object(deserializer).map(Self)
    }
}

/// Reads an integer of type `T`, written with or without a zero fraction.
pub fn integer<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    struct IntegerVisitor<T>(PhantomData<T>);

    impl<T: TryFrom<i64>> IntegerVisitor<T> {
        fn fit<E: de::Error>(&self, value: i64) -> Result<T, E> {
            T::try_from(value).map_err(|_| E::invalid_value(Unexpected::Signed(value), self))
        }
    }

    impl<T: TryFrom<i64>> Visitor<'_> for IntegerVisitor<T> {
        type Value = T;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                formatter,
                "an integer that fits {}",
                std::any::type_name::<T>()
            )
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
            self.fit(value)
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
            let value = i64::try_from(value)
                .map_err(|_| E::invalid_value(Unexpected::Unsigned(value), &self))?;
            self.fit(value)
        }

        fn visit_f64<E: de::Error>(self, value: f64) -> Result<T, E> {
            // i64's range as f64 ends at 2^63, which itself does not fit.
            let in_range =
                (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&value);
            if value.fract() != 0.0 || !in_range {
                return Err(E::invalid_value(Unexpected::Float(value), &self));
            }
            self.fit(value as i64)
        }
    }

    deserializer.deserialize_any(IntegerVisitor(PhantomData))
}

/// [`integer`] for an optional field (`null` or left out: `None`).
pub fn optional_integer<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    struct Integer<T>(T);

    impl<'de, T: TryFrom<i64>> Deserialize<'de> for Integer<T> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            integer(deserializer).map(Self)
        }
    }

    Ok(Option::<Integer<T>>::deserialize(deserializer)?.map(|Integer(value)| value))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Example {
        #[serde(deserialize_with = "integer")]
        count: i16,
        #[serde(default, deserialize_with = "optional_integer")]
        limit: Option<u32>,
    }

    fn read(json: &str) -> Result<Example, String> {
        serde_json::from_str::<ObjectBody<Example>>(json)
            .map(|ObjectBody(example)| example)
            .map_err(|error| error.to_string())
    }

    /// Objects are read, arrays of the same fields are refused; integers may be
    /// written as `3.0` but not `3.5`, and must fit their type.
    #[test]
    fn objects_only_and_integers_as_json_schema_counts_them() {
        assert_eq!(
            read(r#"{"count": 3.0, "limit": null}"#).unwrap(),
            Example {
                count: 3,
                limit: None
            }
        );
        assert_eq!(read(r#"{"count": -2, "limit": 7}"#).unwrap().limit, Some(7));
        assert!(read("[3, 7]").unwrap_err().contains("a JSON object"));
        assert!(read(r#"{"count": 3.5}"#).unwrap_err().contains("3.5"));
        assert!(read(r#"{"count": 40000}"#).unwrap_err().contains("i16"));
        assert!(read(r#"{"count": 1, "limit": -1}"#).is_err());
        assert!(read(r#"{"count": 1e300}"#).is_err());
        assert!(read(r#"{"count": "3"}"#).is_err());
        assert!(
            read(r#"{"count": 1, "extra": 1}"#)
                .unwrap_err()
                .contains("extra")
        );
    }
}
