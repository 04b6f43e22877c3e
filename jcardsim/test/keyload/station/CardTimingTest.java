package keyload.station;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.util.List;
import java.util.Map;
import org.junit.Test;

/** The card timing model: its command-line form, what it makes an exchange cost, and a reader applying it. */
public class CardTimingTest {

    private static final CardTiming MODEL = CardTiming.parse("card=power_up_ms:60,apdu_ms:13,byte_us:100,4A:37.5");

    @Test
    public void parsesEveryCostInNanoseconds() {
        assertEquals(new CardTiming("card", 60_000_000L, 13_000_000L, 100_000L, Map.of(0x4A, 37_500_000L)), MODEL);
    }

    @Test
    public void exchangeCostsFixedPlusBytesOnTheWirePlusTheInstructionsOwnWork() {
        byte[] exportKey = new byte[32];
        exportKey[1] = 0x4A;
        byte[] block = new byte[66];
        assertEquals(13_000_000L + 98 * 100_000L + 37_500_000L, MODEL.exchangeNanos(exportKey, block));
        byte[] getInfo = {(byte) 0x80, 0x40, 0, 0, 0};
        assertEquals(13_000_000L + 7 * 100_000L, MODEL.exchangeNanos(getInfo, new byte[2]));
        assertEquals(0L, CardTiming.NONE.exchangeNanos(getInfo, new byte[2]));
    }

    @Test
    public void refusesWhatItCannotRead() {
        for (String spec : List.of("noname", "=apdu_ms:1", "x=apdu_ms", "x=apdu_ms:-1", "x=apdu_ms:fast",
                "x=select:3", "x=4A4A:3")) {
            IllegalArgumentException e = assertThrows(spec, IllegalArgumentException.class, () -> CardTiming.parse(spec));
            assertTrue(e.getMessage(), e.getMessage().contains("--timing"));
        }
    }

    @Test
    public void readerNamesItsTimingAndEveryTimingMustBeDefined() {
        StationOptions options = StationOptions.parse("--timing", "slow=apdu_ms:20", "--reader", "1=EI:T0@slow",
                "--reader", "2=AS");
        assertEquals(new ReaderSpec("EI", CardProtocol.T0, "slow"), options.readers().get(1));
        assertEquals("none", options.readers().get(2).timing());
        assertEquals(20_000_000L, options.timings().get("slow").apduNanos());
        assertThrows(IllegalArgumentException.class, () -> StationOptions.parse("--reader", "1=AS@fast"));
        assertThrows(IllegalArgumentException.class, () -> StationOptions.parse("--reader", "1=AS@"));
    }

    @Test
    public void readerAnswersNoSoonerThanItsModelSays() throws Exception {
        try (FakeVpcd vpcd = new FakeVpcd()) {
            Station station = Station.start(StationOptions.parse("--control-port", "0", "--role", ProbeApplet.ROLE_SPEC,
                    "--timing", "model=power_up_ms:30,apdu_ms:20,byte_us:1000", "--reader", vpcd.port() + "=PROBE@model"));
            try (FakeVpcd.Card card = vpcd.accept()) {
                long began = System.nanoTime();
                card.atr();
                long atr = System.nanoTime() - began;
                began = System.nanoTime();
                byte[] response = card.transmit(Apdus.SELECT_PROBE);
                long select = System.nanoTime() - began;
                long modelled = 20_000_000L + 1_000_000L * (Apdus.SELECT_PROBE.length + response.length);
                assertTrue("ATR after " + atr + " ns", atr >= 30_000_000L);
                assertTrue("SELECT after " + select + " ns, modelled " + modelled, select >= modelled);
            } finally {
                station.close();
            }
        }
    }

    @Test
    public void timingCommandSwitchesAReadersModelWhileTheStationRuns() throws Exception {
        java.util.concurrent.ExecutorService background = java.util.concurrent.Executors.newSingleThreadExecutor();
        try (FakeVpcd vpcd = new FakeVpcd()) {
            Station station = Station.start(StationOptions.parse("--control-port", "0", "--role", ProbeApplet.ROLE_SPEC,
                    "--timing", "slow=apdu_ms:300", "--reader", vpcd.port() + "=PROBE@slow"));
            background.submit(station::serveControl);
            try (FakeVpcd.Card card = vpcd.accept(); ControlClient control = new ControlClient(station.controlPort())) {
                card.atr();
                assertEquals(List.of("OK"), control.call("TIMING " + vpcd.port() + " none"));
                long began = System.nanoTime();
                card.transmit(Apdus.SELECT_PROBE);
                assertTrue("answered without the model", System.nanoTime() - began < 300_000_000L);
                assertEquals(List.of("OK"), control.call("TIMING " + vpcd.port() + " slow"));
                began = System.nanoTime();
                card.transmit(Apdus.SELECT_PROBE);
                assertTrue("answered by the model again", System.nanoTime() - began >= 300_000_000L);
                assertTrue(control.call("TIMING " + vpcd.port() + " fast").get(0).startsWith("ERR no timing model fast"));
            } finally {
                station.close();
            }
        } finally {
            background.shutdownNow();
        }
    }
}
