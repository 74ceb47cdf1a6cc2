//! `exp`, the logistic function and `tanh` in single precision, written so that a loop over a
//! slice compiles to vector instructions.
//!
//! The C library's `expf` is a call per element, which no compiler vectorises; the decoder's
//! sigmoid over a GAN batch (a million values, three times a step) spent more time in it than
//! in the matrix product before it. This is the classic reduction `x = n ln 2 + r` with
//! `|r| <= ln 2 / 2`, a degree-6 polynomial for `exp(r)` (Cephes' coefficients) and `2^n` put
//! straight into the exponent bits, with no branch and no call: within 2 units in the last
//! place of the exact value (the tests check it against double precision).

/// `1.5 * 2^23`: adding it rounds a float of magnitude below `2^22` to an integer, held in the
/// low mantissa bits.
const ROUNDING: f32 = 12_582_912.0;
const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split in two so that `n * LN2_HIGH` is exact for the `n` that occur.
const LN2_HIGH: f32 = 0.693_359_4;
const LN2_LOW: f32 = -2.121_944_4e-4;
/// Beyond these `exp` over- or underflows single precision; inputs are clamped to them.
const MAX_INPUT: f32 = 88.37;
const MIN_INPUT: f32 = -87.33;

/// `e^x`. Inputs past the edges of single precision give the value at the edge (about
/// `2.4e38` above 88.37, `1.2e-38` below -87.33); NaN gives NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(MIN_INPUT, MAX_INPUT);
    let shifted = x * LOG2_E + ROUNDING;
    let n = shifted - ROUNDING;
    // The integer `n` sits in the low bits of `shifted`'s mantissa.
    let n_bits = shifted.to_bits().wrapping_sub(ROUNDING.to_bits()) as i32;
    let r = (x - n * LN2_HIGH) - n * LN2_LOW;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let exp_r = p * r * r + r + 1.0;
    let scale = f32::from_bits((n_bits.wrapping_add(127) as u32) << 23);
    exp_r * scale
}

/// The logistic function `1 / (1 + e^-z)`.
#[inline(always)]
pub(crate) fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp(-z))
}

/// Below this `|x|`, `tanh` is the odd polynomial; above, `1 - 2 / (e^2|x| + 1)`, which would
/// lose digits to cancellation nearer zero.
const TANH_POLYNOMIAL_BELOW: f32 = 0.625;

/// `tanh(x)`: Cephes' odd polynomial near zero, the exponential form elsewhere, both computed
/// and one selected so that the loop stays branch-free. Within 2 units in the last place.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    let magnitude = x.abs();
    let z = x * x;
    let mut p = -5.704_988_7e-3;
    p = p * z + 2.063_909e-2;
    p = p * z - 5.373_971_6e-2;
    p = p * z + 1.333_144_2e-1;
    p = p * z - 3.333_328e-1;
    let near_zero = p * z * x + x;
    // exp saturates at 2.4e38, where 2 / (e + 1) is below half an ulp of 1: tanh is +-1.
    let far = 1.0 - 2.0 / (exp(2.0 * magnitude) + 1.0);
    let far = far.copysign(x);
    if magnitude < TANH_POLYNOMIAL_BELOW {
        near_zero
    } else {
        far
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between `got` and the exact `want`.
    fn ulps(got: f32, want: f64) -> f64 {
        let want32 = want as f32;
        let ulp = (f32::from_bits(want32.to_bits() + 1) - want32).abs() as f64;
        (got as f64 - want).abs() / ulp
    }

    #[test]
    fn exp_is_within_two_ulps_over_the_whole_range() {
        let mut worst = (0.0f64, 0.0f32);
        let mut x = MIN_INPUT;
        while x <= MAX_INPUT {
            let error = ulps(exp(x), f64::from(x).exp());
            if error > worst.0 {
                worst = (error, x);
            }
            x += 1.3e-3;
        }
        assert!(worst.0 <= 2.0, "{} ulps at x = {}", worst.0, worst.1);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(1000.0).is_finite() && exp(1000.0) > 2e38);
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1.3e-38);
    }

    #[test]
    fn sigmoid_is_accurate_and_saturates() {
        let mut z = -30.0f32;
        while z <= 30.0 {
            let want = 1.0 / (1.0 + (-f64::from(z)).exp());
            let error = ulps(sigmoid(z), want);
            assert!(error <= 3.0, "sigmoid({z}): {error} ulps");
            z += 7.7e-3;
        }
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(100.0), 1.0);
        assert!(sigmoid(-100.0) < 1e-37);
        assert!(sigmoid(f32::NAN).is_nan());
    }

    #[test]
    fn tanh_is_within_two_ulps_near_zero_and_far() {
        let mut x = -12.0f32;
        while x <= 12.0 {
            let want = f64::from(x).tanh();
            let error = ulps(tanh(x), want);
            assert!(error <= 2.0, "tanh({x}): {error} ulps");
            x += 1.1e-3;
        }
        for x in [1e-30f32, 1e-8, 1e-4, 0.624_999_9, 0.625] {
            let error = ulps(tanh(x), f64::from(x).tanh());
            assert!(error <= 2.0, "tanh({x}): {error} ulps");
            assert_eq!(tanh(-x), -tanh(x));
        }
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(tanh(30.0), 1.0);
        assert_eq!(tanh(-1e30), -1.0);
        assert!(tanh(f32::NAN).is_nan());
    }
}
