package keyload.station;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.Test;

/**
 * The real keyload applets on T=0 cards: they work with what a T=0 runtime gives them (Le 256 for commands
 * with data) and their answers come as 61xx/6Cxx; a T=0 reader of the station keeps making T=0 cards.
 */
public class T0CardTest {

    private static final HexFormat HEX = HexFormat.of().withUpperCase();
    private static final int INFO_T_LENGTH = 3;
    /** INFO without a serial: the 11 bytes of PROTOCOL.md §4.1 and the 8 of the §9.2 extension. */
    private static final int INFO_FIXED_BYTES = 11 + 8;
    private static final String GET_INFO = "8040000000";
    private static final String TRANSPORT_KEY = "404142434445464748494A4B4C4D4E4F";

    private static String hex(byte[] bytes) {
        return HEX.formatHex(bytes);
    }

    private static byte[] send(SimulatedCard card, String apduHex) {
        return card.process(HEX.parseHex(apduHex));
    }

    private static String selectCommand(String role) {
        byte[] aid = new Roles().lookup(role).aid();
        return "00A40400" + HEX.toHexDigits((byte) aid.length) + hex(aid) + "00";
    }

    @Test
    public void selectAnswers61xxThenGetResponseGivesInfo() {
        SimulatedCard ei = SimulatedCard.blank(new Roles().lookup("EI"), CardProtocol.T0);
        byte[] announced = send(ei, selectCommand("EI"));
        assertEquals(2, announced.length);
        assertEquals(0x61, announced[0] & 0xFF);
        int length = announced[1] & 0xFF;
        assertEquals("a blank EI's INFO has no serial", INFO_FIXED_BYTES, length);

        byte[] info = send(ei, "00C00000" + HEX.toHexDigits((byte) length));
        assertEquals(length + 2, info.length);
        assertEquals(Apdus.SW_OK, Apdus.sw(info));
        assertEquals("role EI", 0x02, info[1]);
    }

    @Test
    public void getInfoWithLe00Answers6CxxAndTheRepeatGetsIt() {
        SimulatedCard as = SimulatedCard.blank(new Roles().lookup("AS"), CardProtocol.T0);
        send(as, selectCommand("AS"));
        assertEquals("6C13", hex(send(as, GET_INFO)));
        byte[] info = send(as, "8040000013");
        assertEquals(Apdus.SW_OK, Apdus.sw(info));
        assertEquals(INFO_FIXED_BYTES + 2, info.length);
    }

    @Test
    public void commandsWithDataWorkWithTheLeOfAT0Runtime() {
        SimulatedCard ei = SimulatedCard.blank(new Roles().lookup("EI"), CardProtocol.T0);
        send(ei, selectCommand("EI"));
        assertEquals("9000", hex(send(ei, "8050000010" + TRANSPORT_KEY)));
        byte[] info = send(ei, "8040000013");
        assertEquals(16, info[INFO_T_LENGTH]);
        assertEquals("GET CHALLENGE of a blank EI is refused, not 6Cxx", "6985", hex(send(ei, "0084000010")));
    }

    @Test
    public void aT0ReaderAnswersTheT0AtrAndKeepsItAcrossSwaps() throws Exception {
        ExecutorService background = Executors.newSingleThreadExecutor();
        try (FakeVpcd vpcd = new FakeVpcd()) {
            Station station = Station.start(StationOptions.parse("--control-port", "0", "--reader",
                    vpcd.port() + "=EI:T0"));
            Future<Boolean> control = background.submit(station::serveControl);
            try (FakeVpcd.Card card = vpcd.accept(); ControlClient client = new ControlClient(station.controlPort())) {
                assertArrayEquals(CardProtocol.T0.atr(), card.atr());
                assertEquals("61", hex(card.transmit(HEX.parseHex(selectCommand("EI")))).substring(0, 2));

                client.send("SWAP " + vpcd.port() + " AS");
                try (FakeVpcd.Card swapped = vpcd.accept()) {
                    assertEquals(List.of("OK"), client.reply());
                    assertArrayEquals("a card inserted later speaks T=0 too", CardProtocol.T0.atr(), swapped.atr());
                    assertTrue(hex(swapped.transmit(HEX.parseHex(selectCommand("AS")))).startsWith("61"));
                }
            } finally {
                station.close();
                control.cancel(true);
            }
        } finally {
            background.shutdownNow();
        }
    }
}
