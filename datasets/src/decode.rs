//! One encoded image (PNG or JPEG) as a model input: converted to the model's channel count
//! and resized to its height and width, channels first.

use image::imageops::FilterType;

/// Decodes `bytes` into `C x H x W` bytes for `shape = [C, H, W]` (C is 1 or 3). An image of
/// another size is resized (triangle filter); a colour image given to a one-channel model is
/// converted to grey, and a grey one to RGB for a three-channel model.
pub fn image_to_chw(bytes: &[u8], shape: [usize; 3]) -> Result<Vec<u8>, String> {
    let [c, h, w] = shape;
    if c != 1 && c != 3 {
        return Err(format!("models with {c} input channels take no images"));
    }
    let img = image::load_from_memory(bytes).map_err(|e| match e {
        image::ImageError::Unsupported(_) => "not a PNG or JPEG image".to_string(),
        other => format!("not a readable image: {other}"),
    })?;
    let img = if (img.height() as usize, img.width() as usize) == (h, w) {
        img
    } else {
        img.resize_exact(w as u32, h as u32, FilterType::Triangle)
    };
    if c == 1 {
        return Ok(img.to_luma8().into_raw());
    }
    let hwc = img.to_rgb8().into_raw();
    let mut chw = vec![0u8; hwc.len()];
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        for (ch, v) in px.iter().enumerate() {
            chw[ch * h * w + i] = *v;
        }
    }
    Ok(chw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgb, RgbImage};
    use std::io::Cursor;

    fn png(img: image::DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn a_colour_image_becomes_channels_first_or_grey() {
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(0, 0, Rgb([10, 20, 30]));
        img.put_pixel(1, 0, Rgb([40, 50, 60]));
        let bytes = png(img.into());
        assert_eq!(
            image_to_chw(&bytes, [3, 1, 2]).unwrap(),
            [10, 40, 20, 50, 30, 60]
        );
        assert_eq!(image_to_chw(&bytes, [1, 1, 2]).unwrap().len(), 2);
    }

    #[test]
    fn other_sizes_are_resized() {
        let bytes = png(image::DynamicImage::new_luma8(56, 56));
        assert_eq!(image_to_chw(&bytes, [1, 28, 28]).unwrap().len(), 784);
    }

    #[test]
    fn corrupt_bytes_are_a_clear_error() {
        let err = image_to_chw(b"not an image at all", [1, 28, 28]).unwrap_err();
        assert!(err.contains("not a PNG or JPEG image"), "{err}");
        let mut bytes = png(image::DynamicImage::new_luma8(28, 28));
        bytes.truncate(bytes.len() / 2);
        let err = image_to_chw(&bytes, [1, 28, 28]).unwrap_err();
        assert!(err.contains("not a readable image"), "{err}");
    }
}
