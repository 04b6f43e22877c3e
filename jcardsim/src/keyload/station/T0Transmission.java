package keyload.station;

import java.util.Arrays;
import java.util.function.UnaryOperator;

/**
 * What a host sees of a T=0 card through PC/SC: the procedure a T=0 card's runtime (and a reader
 * exchanging TPDUs) follows, as ISO 7816-3 and -4 and the Java Card runtime specification describe it.
 *
 * <ul>
 *   <li><b>Case 2</b> (header and Le, no data): T=0 carries Le as P3 and the card must send exactly that
 *       many bytes. When the applet's answer has another length, the card answers {@code 6Cxx} (xx = the
 *       length it has) and nothing else; the host repeats the command with Le = xx.</li>
 *   <li><b>Case 3 and 4</b> (data, with or without Le): T=0 cannot carry Le after data, so the card never
 *       learns it and the runtime reports Le = 256 to the applet (the APDU reaches the applet with Le 00).
 *       Response data cannot follow in the same exchange: the card answers {@code 61xx} (xx = bytes
 *       waiting, 00 for 256 or more) and keeps the response until the host fetches it with GET RESPONSE
 *       ({@code 00 C0 00 00 Le}); a GET RESPONSE asking for more than is waiting gets {@code 6Cxx}. The
 *       applet's status word comes with the last part.</li>
 *   <li>A response waiting is dropped by any other command and by a power loss. A GET RESPONSE with nothing
 *       waiting goes to the applet like any command (keyload's applets answer 6D00).</li>
 *   <li>Case 1 (header only) and anything malformed go to the card unchanged; an answer with data is
 *       deferred like case 4.</li>
 * </ul>
 *
 * <p>Not thread-safe: the reader holding the card is its only user.
 */
final class T0Transmission implements Transmission {

    static final int SW1_BYTES_AVAILABLE = 0x61;
    static final int SW1_WRONG_LE = 0x6C;
    static final byte CLA_ISO = 0x00;
    static final byte INS_GET_RESPONSE = (byte) 0xC0;

    private static final int HEADER_BYTES = 4;
    private static final int OFFSET_P1 = 2;
    private static final int OFFSET_P2 = 3;
    private static final int OFFSET_P3 = 4;
    private static final int SW_BYTES = 2;
    /** Short APDUs: a length byte 00 means 256. */
    private static final int SHORT_MAX = 256;

    private byte[] waiting;
    private int waitingOffset;
    private byte sw1;
    private byte sw2;

    @Override
    public byte[] exchange(byte[] command, UnaryOperator<byte[]> card) {
        if (waiting != null && isGetResponse(command)) {
            return serveWaiting(length(command[OFFSET_P3]));
        }
        waiting = null;
        int caseNumber = isoCase(command);
        if (caseNumber == 2) {
            return exactLength(card.apply(command), length(command[OFFSET_P3]));
        }
        byte[] sent = caseNumber == 3 || caseNumber == 4 ? withLe256(command) : command;
        return deferData(card.apply(sent));
    }

    @Override
    public void powerLoss() {
        waiting = null;
    }

    /** 1 to 4 for the short APDU cases of ISO 7816-3, 0 for anything else (extended, malformed). */
    static int isoCase(byte[] command) {
        if (command.length == HEADER_BYTES) {
            return 1;
        }
        if (command.length == HEADER_BYTES + 1) {
            return 2;
        }
        if (command.length > HEADER_BYTES + 1 && command[OFFSET_P3] != 0) {
            int dataEnd = HEADER_BYTES + 1 + (command[OFFSET_P3] & 0xFF);
            if (command.length == dataEnd) {
                return 3;
            }
            if (command.length == dataEnd + 1) {
                return 4;
            }
        }
        return 0;
    }

    private static boolean isGetResponse(byte[] command) {
        return command.length == HEADER_BYTES + 1 && command[0] == CLA_ISO && command[1] == INS_GET_RESPONSE
                && command[OFFSET_P1] == 0 && command[OFFSET_P2] == 0;
    }

    private static int length(byte p3) {
        return p3 == 0 ? SHORT_MAX : p3 & 0xFF;
    }

    /** Header, Lc and data as the card receives them over T=0, with the Le a T=0 runtime reports: 00. */
    private static byte[] withLe256(byte[] command) {
        int dataEnd = HEADER_BYTES + 1 + (command[OFFSET_P3] & 0xFF);
        byte[] sent = Arrays.copyOf(command, dataEnd + 1);
        sent[dataEnd] = 0;
        return sent;
    }

    /** Case 2: the answer as it is when its length is Le (or it has no data), else 6Cxx alone. */
    private static byte[] exactLength(byte[] response, int le) {
        int dataLength = response.length - SW_BYTES;
        if (dataLength <= 0 || dataLength == le) {
            return response;
        }
        return statusWord(SW1_WRONG_LE, dataLength);
    }

    /** Keeps the data of an answer for GET RESPONSE and announces it with 61xx. */
    private byte[] deferData(byte[] response) {
        int dataLength = response.length - SW_BYTES;
        if (dataLength <= 0) {
            return response;
        }
        waiting = Arrays.copyOf(response, dataLength);
        waitingOffset = 0;
        sw1 = response[dataLength];
        sw2 = response[dataLength + 1];
        return statusWord(SW1_BYTES_AVAILABLE, dataLength);
    }

    /** GET RESPONSE: the next Le bytes, then 61xx while more wait, or the applet's status word at the end. */
    private byte[] serveWaiting(int le) {
        int left = waiting.length - waitingOffset;
        if (le > left) {
            return statusWord(SW1_WRONG_LE, left);
        }
        byte[] part = new byte[le + SW_BYTES];
        System.arraycopy(waiting, waitingOffset, part, 0, le);
        waitingOffset += le;
        left -= le;
        if (left > 0) {
            part[le] = (byte) SW1_BYTES_AVAILABLE;
            part[le + 1] = (byte) Math.min(left, SHORT_MAX); // 256 or more: 00
        } else {
            part[le] = sw1;
            part[le + 1] = sw2;
            waiting = null;
        }
        return part;
    }

    /** SW1 and a length as SW2, where 256 is written 00. */
    private static byte[] statusWord(int sw1, int length) {
        return new byte[] {(byte) sw1, (byte) Math.min(length, SHORT_MAX)};
    }
}
