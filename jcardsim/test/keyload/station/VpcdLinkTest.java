package keyload.station;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.net.Socket;
import jdk.net.ExtendedSocketOptions;
import org.junit.Test;

public class VpcdLinkTest {

    @Test
    public void frameIsBigEndianLengthThenPayload() {
        byte[] payload = new byte[0x0102];
        payload[0] = 7;
        byte[] framed = VpcdLink.frame(payload);
        assertArrayEquals(new byte[] {0x01, 0x02, 7}, java.util.Arrays.copyOf(framed, 3));
        assertTrue(framed.length == 2 + 0x0102);
        assertArrayEquals(new byte[] {0x00, 0x01, VpcdLink.CTRL_GET_ATR}, VpcdLink.frame(new byte[] {4}));
    }

    @Test
    public void readsConsecutiveFramesThenCleanEnd() throws IOException {
        ByteArrayOutputStream stream = new ByteArrayOutputStream();
        stream.write(VpcdLink.frame(new byte[] {VpcdLink.CTRL_RESET}));
        stream.write(VpcdLink.frame(new byte[] {0, (byte) 0xA4, 4, 0}));
        ByteArrayInputStream in = new ByteArrayInputStream(stream.toByteArray());
        assertArrayEquals(new byte[] {VpcdLink.CTRL_RESET}, VpcdLink.readFrame(in));
        assertArrayEquals(new byte[] {0, (byte) 0xA4, 4, 0}, VpcdLink.readFrame(in));
        assertNull(VpcdLink.readFrame(in));
    }

    @Test
    public void endInsideAMessageIsAnError() {
        assertThrows(EOFException.class, () -> VpcdLink.readFrame(new ByteArrayInputStream(new byte[] {0})));
        assertThrows(EOFException.class, () -> VpcdLink.readFrame(new ByteArrayInputStream(new byte[] {0, 5, 1, 2})));
    }

    @Test
    public void refusesPayloadsTheLengthCannotAnnounce() {
        assertThrows(IllegalArgumentException.class, () -> VpcdLink.frame(new byte[VpcdLink.MAX_PAYLOAD + 1]));
    }

    @Test
    public void platformSupportsQuickAck() throws IOException {
        // Without TCP_QUICKACK every APDU waits for a delayed ACK (~40 ms); VpcdLink would silently skip it.
        try (Socket socket = new Socket()) {
            assertTrue(socket.supportedOptions().contains(ExtendedSocketOptions.TCP_QUICKACK));
        }
    }
}
