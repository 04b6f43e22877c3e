package keyload.station;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.util.HexFormat;
import org.junit.Test;

public class SimulatedCardTest {

    private static SimulatedCard probeWith(int value) {
        SimulatedCard card = SimulatedCard.blank(Apdus.probeRole(), CardProtocol.T1);
        assertEquals(Apdus.SW_OK, Apdus.sw(card.process(Apdus.SELECT_PROBE)));
        assertEquals(Apdus.SW_OK, Apdus.sw(card.process(Apdus.write(value))));
        return card;
    }

    @Test
    public void powerLossZeroesBothTransientKindsKeepsPersistentAndDeselects() {
        SimulatedCard card = probeWith(0x5A);
        assertArrayEquals(new byte[] {0x5A, 0x5A, 0x5A}, Apdus.data(card.process(Apdus.READ)));

        card.powerLoss();

        assertEquals("no applet may be selected after power loss",
                Apdus.SW_NO_APPLET_SELECTED, Apdus.sw(card.process(Apdus.READ)));
        assertEquals(Apdus.SW_OK, Apdus.sw(card.process(Apdus.SELECT_PROBE)));
        assertArrayEquals(new byte[] {0, 0, 0x5A}, Apdus.data(card.process(Apdus.READ)));
    }

    @Test
    public void reselectingClearsOnlyDeselectMemory() {
        // Guards the test above: it is the power loss, not the SELECT that follows it, that clears
        // CLEAR_ON_RESET memory.
        SimulatedCard card = probeWith(0x21);
        assertEquals(Apdus.SW_OK, Apdus.sw(card.process(Apdus.SELECT_PROBE)));
        assertArrayEquals(new byte[] {0, 0x21, 0x21}, Apdus.data(card.process(Apdus.READ)));
    }

    @Test
    public void cardsAreIndependentOfEachOther() {
        SimulatedCard first = probeWith(0x11);
        SimulatedCard second = probeWith(0x22);
        second.powerLoss();
        assertArrayEquals("making and resetting another card must not touch this one",
                new byte[] {0x11, 0x11, 0x11}, Apdus.data(first.process(Apdus.READ)));
        assertEquals(Apdus.SW_OK, Apdus.sw(second.process(Apdus.SELECT_PROBE)));
        assertArrayEquals(new byte[] {0, 0, 0x22}, Apdus.data(second.process(Apdus.READ)));
    }

    @Test
    public void freshCardsDrawDifferentSecureRandom() {
        SimulatedCard first = probeWith(0);
        SimulatedCard second = probeWith(0);
        byte[] a = first.process(Apdus.CHALLENGE);
        byte[] b = second.process(Apdus.CHALLENGE);
        assertEquals(Apdus.SW_OK, Apdus.sw(a));
        assertEquals(ProbeApplet.CHALLENGE_LENGTH, Apdus.data(a).length);
        // jCardSim's default generator has a fixed seed: two fresh cards would draw the same bytes.
        assertFalse(HexFormat.of().formatHex(a), java.util.Arrays.equals(a, b));
        assertEquals("1", System.getProperty(SimulatedCard.RANDOM_SECURE_PROPERTY));
    }

    @Test
    public void malformedApduAnswers6700AndTheCardGoesOn() {
        SimulatedCard card = probeWith(0x33);
        byte[] malformed = {0x00, 0x01};
        assertArrayEquals(new byte[] {0x67, 0x00}, card.process(malformed));
        assertArrayEquals(new byte[] {0x33, 0x33, 0x33}, Apdus.data(card.process(Apdus.READ)));
    }

    @Test
    public void commandCasesAreThoseOfIso7816() {
        String[] cases = {"80100000", "8010000010", "80100000021122", "8010000002112200", "80100000000010",
            "8010000000000111", "801000000000011101FF"};
        String[] malformed = {"", "80", "801000", "80100000021122FF00", "801000000211", "801000000000",
            "8010000000000211", "8010000000000011"};
        for (String hex : cases) {
            assertTrue(hex, SimulatedCard.isCommandCase(HexFormat.of().parseHex(hex)));
        }
        for (String hex : malformed) {
            assertFalse(hex, SimulatedCard.isCommandCase(HexFormat.of().parseHex(hex)));
        }
    }

    @Test
    public void missingAppletClassIsReportedByName() {
        AppletRole ghost = AppletRole.parse("GHOST=keyload.applet.NoSuchApplet:F000000009");
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> SimulatedCard.blank(ghost, CardProtocol.T1));
        assertTrue(e.getMessage(), e.getMessage().contains("keyload.applet.NoSuchApplet"));
    }

    @Test
    public void atrIsT1WithAValidCheckByte() {
        byte[] atr = CardProtocol.T1.atr();
        assertEquals(0x3B, atr[0] & 0xFF);
        assertEquals("TD1 announces T=1 and no further interface bytes", 0x01, atr[2]);
        assertEquals("historical byte count", atr.length - 4, atr[1] & 0x0F);
        int check = 0;
        for (int i = 1; i < atr.length; i++) {
            check ^= atr[i];
        }
        assertEquals("XOR from T0 through TCK must be 0", 0, check);
    }
}
