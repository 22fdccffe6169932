#!/usr/bin/env bash
# Regenerates the example call recordings in examples/recordings/.
#
# Needs these Debian packages (Debian 12 "bookworm" versions were used for the
# committed files):
#   apt-get install -y espeak-ng sox libsox-fmt-all lame opus-tools
#     espeak-ng       1.51      text-to-speech (the "speakers")
#     sox             14.4.2    resampling to 8 kHz, telephone band, G.711 and Vorbis
#     libsox-fmt-all  14.4.2    sox's Ogg Vorbis writer
#     lame            3.100     MP3 (MPEG-2.5 Layer III at 8 kHz)
#     opus-tools      0.2       Ogg Opus (opusenc, libopus 1.3.1)
#
# Deterministic: same tool versions give byte-identical files. espeak-ng has no
# randomness; sox runs with -R (fixed random seed, so the Ogg serial number is
# fixed) and -D (no dither); opusenc gets a fixed --serial; lame writes no date.
#
# Each recording is: speech -> 8 kHz mono -> telephone band (300-3400 Hz) ->
# the container/codec named in the table below. The file stem is the recording
# id the CXone emulator serves; the extension is the container.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
out="$here/recordings"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for tool in espeak-ng sox lame opusenc; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y espeak-ng sox libsox-fmt-all lame opus-tools" >&2; exit 1; }
done

mkdir -p "$out"

# speak ID VOICE TEXT -> $work/ID.wav: 8 kHz mono 16-bit PCM, telephone band,
# 0.3 s of silence before and after (as a recorder starts before the first word).
speak() {
    local id="$1" voice="$2" text="$3"
    espeak-ng -v "$voice" -s 155 -w "$work/$id.tts.wav" "$text"
    sox -R "$work/$id.tts.wav" -D -r 8000 -c 1 -b 16 -e signed-integer "$work/$id.wav" \
        highpass 300 lowpass 3400 norm -3 pad 0.3 0.3
}

# 100001: agent greeting, G.711 mu-law WAV (WAVE_FORMAT_MULAW, tag 7), 8-bit.
speak 100001 en-us "Thank you for calling Northwind Energy. My name is Sarah, and this call may be recorded for quality and training purposes. How can I help you today?"
sox -R "$work/100001.wav" -D -e u-law -b 8 "$out/100001.wav"

# 100002: customer asking about a bill, 16-bit linear PCM WAV (tag 1).
speak 100002 en-gb "Hi, I'm calling about my last bill. It's almost twice what I normally pay, and I don't think I used any more electricity than usual."
cp "$work/100002.wav" "$out/100002.wav"

# 100003: payment confirmation, MP3: 8 kHz is MPEG-2.5 Layer III; 16 kbit/s CBR,
# with an ID3v2 tag in front and an ID3v1 tag at the end (as some recorders write).
speak 100003 en-us "Your payment of eighty four dollars and twenty cents has been received. Your confirmation number is seven, three, one, nine, four. Thank you."
lame --quiet -m m -b 16 --resample 8 --add-id3v2 \
    --tt "Recording 100003" --ta "voxpipe examples" --tc "synthetic speech, espeak-ng" \
    "$work/100003.wav" "$out/100003.mp3"

# 100004: a short voicemail, Ogg Opus (opusenc keeps input rate 8000 in OpusHead;
# Opus itself runs at 48 kHz), 12 kbit/s VBR, speech mode, fixed stream serial.
speak 100004 en-us "Hello, this is Mark Peterson calling back about ticket four five two. Please call me on my mobile after three o'clock. Thanks, bye."
opusenc --quiet --speech --bitrate 12 --serial 100004 \
    --comment "title=Recording 100004" "$work/100004.wav" "$out/100004.opus"

# 100005: transfer announcement, G.711 A-law WAV (WAVE_FORMAT_ALAW, tag 6), 8-bit.
speak 100005 en-gb-x-rp "Please hold while I transfer you to our billing department. Your call is important to us, and the next available agent will be with you shortly."
sox -R "$work/100005.wav" -D -e a-law -b 8 "$out/100005.wav"

# 100006: customer confirming details, Ogg Vorbis at 8 kHz (quality 0).
speak 100006 en-us "Yes, the account is in my name. The address is twelve Harbour Street, and the last four digits of the card are five five zero eight."
sox -R "$work/100006.wav" -D -t ogg -C 0 "$out/100006.ogg"

ls -l "$out"
du -cb "$out"/1000* | tail -1
