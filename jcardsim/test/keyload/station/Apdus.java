package keyload.station;

import java.util.Arrays;
import java.util.HexFormat;

/** The probe applet's commands and small helpers to read responses. */
final class Apdus {

    static final byte[] SELECT_PROBE = HexFormat.of().parseHex("00A4040005" + ProbeApplet.AID_HEX);
    static final byte[] READ = {(byte) 0x80, ProbeApplet.INS_READ, 0, 0, 3};
    static final byte[] CHALLENGE = {0, ProbeApplet.INS_CHALLENGE, 0, 0, (byte) ProbeApplet.CHALLENGE_LENGTH};
    static final int SW_OK = 0x9000;
    /** What jCardSim answers to a command when no applet is selected. */
    static final int SW_NO_APPLET_SELECTED = 0x6986;

    private Apdus() {
    }

    static byte[] write(int value) {
        return new byte[] {(byte) 0x80, ProbeApplet.INS_WRITE, (byte) value, 0};
    }

    static int sw(byte[] response) {
        return ((response[response.length - 2] & 0xFF) << 8) | (response[response.length - 1] & 0xFF);
    }

    static byte[] data(byte[] response) {
        return Arrays.copyOf(response, response.length - 2);
    }

    static AppletRole probeRole() {
        return AppletRole.parse(ProbeApplet.ROLE_SPEC);
    }
}
