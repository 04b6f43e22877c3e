package keyload.station;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.function.UnaryOperator;
import org.junit.Test;

/** The T=0 procedure against a scripted card: what reaches the applet and what the host gets back. */
public class T0TransmissionTest {

    private static final HexFormat HEX = HexFormat.of().withUpperCase();

    /** A card that answers every command with one fixed response and records what it was sent. */
    private static final class ScriptedCard implements UnaryOperator<byte[]> {
        final List<String> received = new ArrayList<>();
        byte[] answer;

        ScriptedCard(String answerHex) {
            answer = HEX.parseHex(answerHex);
        }

        @Override
        public byte[] apply(byte[] command) {
            received.add(HEX.formatHex(command));
            return answer.clone();
        }
    }

    private final T0Transmission t0 = new T0Transmission();

    private String send(String commandHex, ScriptedCard card) {
        return HEX.formatHex(t0.exchange(HEX.parseHex(commandHex), card));
    }

    private static String data(int length) {
        byte[] bytes = new byte[length];
        for (int i = 0; i < length; i++) {
            bytes[i] = (byte) i;
        }
        return HEX.formatHex(bytes);
    }

    @Test
    public void caseTwoWithTheRightLeAnswersAtOnce() {
        ScriptedCard card = new ScriptedCard(data(16) + "9000");
        assertEquals(data(16) + "9000", send("0084000010", card));
        assertEquals(List.of("0084000010"), card.received);
    }

    @Test
    public void caseTwoWithAnotherLeAnswers6CxxAndTheRepeatGetsTheData() {
        ScriptedCard card = new ScriptedCard(data(0x13) + "9000");
        assertEquals("6C13", send("8040000000", card));
        assertEquals("6C13", send("8040000020", card));
        assertEquals(data(0x13) + "9000", send("8040000013", card));
        assertEquals("each try runs the command", 3, card.received.size());
    }

    @Test
    public void caseTwoWithoutDataPassesTheStatusWord() {
        assertEquals("6983", send("0084000010", new ScriptedCard("6983")));
    }

    @Test
    public void caseFourReachesTheAppletWithLe256AndItsDataWaitsFor61xx() {
        ScriptedCard card = new ScriptedCard(data(0x40) + "9000");
        assertEquals("6140", send("804A00000311223310", card));
        assertEquals("the applet sees Le 00, as a T=0 runtime reports 256", List.of("804A00000311223300"),
                card.received);
        assertEquals(data(0x40) + "9000", send("00C0000040", card));
        assertEquals("GET RESPONSE is served without the applet", 1, card.received.size());
    }

    @Test
    public void caseThreeReachesTheAppletWithLe256AndAnswersItsStatusWord() {
        ScriptedCard card = new ScriptedCard("63C4");
        assertEquals("63C4", send("804C000002AABB", card));
        assertEquals(List.of("804C000002AABB00"), card.received);
    }

    @Test
    public void dataThatComesWithAnErrorKeepsTheErrorForTheLastPart() {
        ScriptedCard card = new ScriptedCard("0102" + "6282");
        assertEquals("6102", send("00A4040002AAAA00", card));
        assertEquals("0102" + "6282", send("00C0000002", card));
    }

    @Test
    public void getResponseInPartsAnnouncesWhatIsLeft() {
        ScriptedCard card = new ScriptedCard(data(0x30) + "9000");
        assertEquals("6130", send("00A4040002AAAA00", card));
        String first = send("00C0000010", card);
        assertEquals(data(0x30).substring(0, 0x20) + "6120", first);
        assertEquals(data(0x30).substring(0x20) + "9000", send("00C0000020", card));
    }

    @Test
    public void getResponseAskingTooMuchAnswers6CxxAndTheDataStillWaits() {
        ScriptedCard card = new ScriptedCard(data(0x10) + "9000");
        assertEquals("6110", send("00A4040002AAAA00", card));
        assertEquals("6C10", send("00C0000000", card));
        assertEquals(data(0x10) + "9000", send("00C0000010", card));
    }

    @Test
    public void twoHundredFiftySixBytesAre6100AndGetResponse00() {
        ScriptedCard card = new ScriptedCard(data(256) + "9000");
        assertEquals("6100", send("00A4040002AAAA00", card));
        assertEquals(data(256) + "9000", send("00C0000000", card));
    }

    @Test
    public void anotherCommandOrAPowerLossDropsWhatWaits() {
        ScriptedCard card = new ScriptedCard(data(8) + "9000");
        assertEquals("6108", send("00A4040002AAAA00", card));
        card.answer = HEX.parseHex("9000");
        assertEquals("9000", send("805E0000", card));
        card.answer = HEX.parseHex("6D00");
        assertEquals("nothing waits: the applet gets GET RESPONSE", "6D00", send("00C0000008", card));

        card.answer = HEX.parseHex(data(8) + "9000");
        assertEquals("6108", send("00A4040002AAAA00", card));
        t0.powerLoss();
        card.answer = HEX.parseHex("6D00");
        assertEquals("6D00", send("00C0000008", card));
        assertEquals(List.of("00A4040002AAAA00", "805E0000", "00C0000008", "00A4040002AAAA00", "00C0000008"),
                card.received);
    }

    @Test
    public void caseOneAndMalformedCommandsGoThroughUnchanged() {
        ScriptedCard card = new ScriptedCard("9000");
        assertEquals("9000", send("805E0000", card));
        assertEquals("9000", send("8050000005AABB", card));
        assertEquals(List.of("805E0000", "8050000005AABB"), card.received);
    }

    @Test
    public void isoCases() {
        assertEquals(1, T0Transmission.isoCase(HEX.parseHex("805E0000")));
        assertEquals(2, T0Transmission.isoCase(HEX.parseHex("8040000000")));
        assertEquals(3, T0Transmission.isoCase(HEX.parseHex("804C000002AABB")));
        assertEquals(4, T0Transmission.isoCase(HEX.parseHex("804C000002AABB00")));
        assertEquals(0, T0Transmission.isoCase(HEX.parseHex("804C000002AABBCCDD")));
        assertEquals(0, T0Transmission.isoCase(HEX.parseHex("0001")));
    }

    @Test
    public void protocolsParseAndTheT0AtrOffersT0Only() {
        assertEquals(CardProtocol.T0, CardProtocol.parse("t0"));
        assertEquals(CardProtocol.T0, CardProtocol.parse("T=0"));
        assertEquals(CardProtocol.T1, CardProtocol.parse("T1"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> CardProtocol.parse("T2"));
        assertTrue(e.getMessage(), e.getMessage().contains("T0 or T1"));

        byte[] atr = CardProtocol.T0.atr();
        assertEquals(0x3B, atr[0] & 0xFF);
        assertEquals("no interface bytes: T=0 is implied", 0, (atr[1] & 0xF0));
        assertEquals("historical bytes and nothing else (no TCK for T=0 only)", atr.length - 2, atr[1] & 0x0F);
        assertArrayEquals("same historical bytes as the T=1 ATR",
                Arrays.copyOfRange(CardProtocol.T1.atr(), 3, 12), Arrays.copyOfRange(atr, 2, 11));
    }
}
