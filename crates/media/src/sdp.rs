//! SDP text the endpoint writes itself: the offer built for clients of the original
//! protocol, which send only their ICE credentials and DTLS fingerprint, the bitrate
//! line (`b=AS`) added to every answer's media sections, and one media stream id per
//! receive slot in the answer's `msid`s.

use confer_core::media::MediaError;

/// The offer of a client that sent `ufrag`, `pwd` and `fingerprint` (`sha-256 AB:CD:…`)
/// instead of SDP: one sendrecv Opus audio line and one sendrecv VP8 video line, bundled,
/// with the mid and transport-wide sequence number header extensions.
pub fn offer_from_credentials(
    ufrag: &str,
    pwd: &str,
    fingerprint: &str,
) -> Result<String, MediaError> {
    // ice-char = ALPHA / DIGIT / "+" / "/" (RFC 8839); lengths from the same RFC.
    let ice_chars = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    };
    if !(4..=256).contains(&ufrag.len()) || !ice_chars(ufrag) {
        return Err(MediaError::BadOffer(
            "ufrag: 4 to 256 ICE characters".into(),
        ));
    }
    if !(22..=256).contains(&pwd.len()) || !ice_chars(pwd) {
        return Err(MediaError::BadOffer("pwd: 22 to 256 ICE characters".into()));
    }
    let fingerprint = fingerprint.trim();
    let valid_fingerprint = fingerprint.split_once(' ').is_some_and(|(hash, hex)| {
        hash.eq_ignore_ascii_case("sha-256")
            && hex.split(':').count() == 32
            && hex
                .split(':')
                .all(|byte| byte.len() == 2 && byte.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if !valid_fingerprint {
        return Err(MediaError::BadOffer(
            "fingerprint: \"sha-256 AB:CD:…\" (32 bytes)".into(),
        ));
    }
    let transport = format!(
        "c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n\
         a=fingerprint:{fingerprint}\r\na=setup:actpass\r\na=sendrecv\r\na=rtcp-mux\r\n\
         a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
         a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    );
    Ok(format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
         a=msid-semantic: WMS\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n{transport}a=mid:0\r\n\
         a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\n\
         a=fmtp:111 minptime=10;useinbandfec=1\r\n\
         m=video 9 UDP/TLS/RTP/SAVPF 96\r\n{transport}a=mid:1\r\n\
         a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 transport-cc\r\na=rtcp-fb:96 ccm fir\r\n\
         a=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n"
    ))
}

/// `answer` with `b=AS:<kbps>` in every video section (browsers cap what they send on it):
/// after the section's `c=` line, where RFC 8866 puts bandwidth lines, or after its `m=`
/// line when it has none.
pub fn with_bitrate(answer: &str, kbps: u32) -> String {
    let mut out = String::with_capacity(answer.len() + 64);
    let mut pending = false;
    for line in answer.split_inclusive('\n') {
        let text = line.trim_end();
        if text.starts_with("m=") {
            if pending {
                out.push_str(&format!("b=AS:{kbps}\r\n"));
            }
            pending = text.starts_with("m=video");
            out.push_str(line);
            continue;
        }
        if pending && text.starts_with("b=") {
            // The section has its own bandwidth line already: leave it.
            pending = false;
        }
        if pending && !text.starts_with("c=") && !text.starts_with("i=") {
            out.push_str(&format!("b=AS:{kbps}\r\n"));
            pending = false;
        }
        out.push_str(line);
        if pending && text.starts_with("c=") {
            out.push_str(&format!("b=AS:{kbps}\r\n"));
            pending = false;
        }
    }
    if pending {
        out.push_str(&format!("b=AS:{kbps}\r\n"));
    }
    out
}

/// `answer` with the n-th audio and the n-th video section we send on (receive slot n)
/// in one media stream, `confer-slot-<n>`, in their `a=msid` and `a=ssrc … msid` lines.
/// str0m gives each line a stream of its own, and the sendrecv lines the offerer's own
/// stream id; a browser then pairs a slot's audio and video in neither, and lip-syncs
/// only tracks of one stream.
pub fn with_slot_streams(answer: &str) -> String {
    let mut out = String::with_capacity(answer.len() + 128);
    let (mut audio, mut video) = (0usize, 0usize);
    // The sections, each with its kind; the slot is known once its direction line is read.
    let mut sections: Vec<Vec<&str>> = vec![Vec::new()];
    for line in answer.split_inclusive('\n') {
        if line.starts_with("m=") {
            sections.push(Vec::new());
        }
        if let Some(section) = sections.last_mut() {
            section.push(line);
        }
    }
    for (index, section) in sections.iter().enumerate() {
        let kind = section.first().map(|l| l.trim_end()).unwrap_or("");
        let sends = section.iter().any(|l| {
            let l = l.trim_end();
            l == "a=sendrecv" || l == "a=sendonly"
        });
        let slot = if index == 0 || !sends {
            None
        } else if kind.starts_with("m=audio") {
            audio += 1;
            Some(audio - 1)
        } else if kind.starts_with("m=video") {
            video += 1;
            Some(video - 1)
        } else {
            None
        };
        for line in section {
            let Some(slot) = slot else {
                out.push_str(line);
                continue;
            };
            let stream = format!("confer-slot-{slot}");
            let text = line.trim_end_matches(['\r', '\n']);
            let ending = &line[text.len()..];
            if let Some(rest) = text.strip_prefix("a=msid:") {
                let track = rest.split_once(' ').map_or("", |(_, t)| t);
                out.push_str(&format!("a=msid:{stream} {track}{ending}"));
            } else if let Some((head, rest)) = text
                .strip_prefix("a=ssrc:")
                .and_then(|r| r.split_once(" msid:"))
            {
                let track = rest.split_once(' ').map_or("", |(_, t)| t);
                out.push_str(&format!("a=ssrc:{head} msid:{stream} {track}{ending}"));
            } else {
                out.push_str(line);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_slot_s_audio_and_video_share_one_stream() {
        let answer = "v=0\r\na=msid-semantic: WMS own\r\n\
            m=audio 9 X 111\r\na=mid:0\r\na=sendrecv\r\na=msid:own a0\r\na=ssrc:1 msid:own a0\r\n\
            m=video 9 X 96\r\na=mid:1\r\na=sendrecv\r\na=msid:own v0\r\na=ssrc:2 msid:own v0\r\na=ssrc:3 msid:own v0\r\n\
            m=audio 9 X 111\r\na=mid:2\r\na=sendonly\r\na=msid:r1 a1\r\n\
            m=video 9 X 96\r\na=mid:3\r\na=sendonly\r\na=msid:r2 v1\r\n\
            m=audio 9 X 111\r\na=mid:4\r\na=recvonly\r\n";
        let out = with_slot_streams(answer);
        assert_eq!(
            out,
            "v=0\r\na=msid-semantic: WMS own\r\n\
            m=audio 9 X 111\r\na=mid:0\r\na=sendrecv\r\na=msid:confer-slot-0 a0\r\na=ssrc:1 msid:confer-slot-0 a0\r\n\
            m=video 9 X 96\r\na=mid:1\r\na=sendrecv\r\na=msid:confer-slot-0 v0\r\na=ssrc:2 msid:confer-slot-0 v0\r\na=ssrc:3 msid:confer-slot-0 v0\r\n\
            m=audio 9 X 111\r\na=mid:2\r\na=sendonly\r\na=msid:confer-slot-1 a1\r\n\
            m=video 9 X 96\r\na=mid:3\r\na=sendonly\r\na=msid:confer-slot-1 v1\r\n\
            m=audio 9 X 111\r\na=mid:4\r\na=recvonly\r\n"
        );
    }

    #[test]
    fn video_sections_get_the_cap_after_their_connection_line() {
        let answer = "v=0\r\nm=audio 9 X 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\nm=video 9 X 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n";
        let capped = with_bitrate(answer, 800);
        assert_eq!(
            capped,
            "v=0\r\nm=audio 9 X 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\nm=video 9 X 96\r\nc=IN IP4 0.0.0.0\r\nb=AS:800\r\na=mid:1\r\n"
        );
    }

    #[test]
    fn credentials_that_could_inject_sdp_lines_are_refused() {
        let fingerprint = format!("sha-256 {}", vec!["AB"; 32].join(":"));
        assert!(offer_from_credentials("abcd", "0123456789012345678901", &fingerprint).is_ok());
        assert!(
            offer_from_credentials("ab\r\na=x", "0123456789012345678901", &fingerprint).is_err()
        );
        assert!(offer_from_credentials("abcd", "short", &fingerprint).is_err());
        assert!(offer_from_credentials("abcd", "0123456789012345678901", "sha-256 AB").is_err());
    }
}
