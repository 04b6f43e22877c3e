package keyload.applet;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import java.io.IOException;
import java.lang.reflect.Field;
import org.junit.Test;

/** The applets and the test oracle reproduce every vector of PROTOCOL.md §6 byte for byte. */
public class VectorsTest {

    @Test
    public void oracleReproducesEveryIntermediateValue() throws IOException {
        for (Vectors.Vector v : Vectors.all()) {
            RefCrypto.Load load = load(v);
            assertArrayEquals(v + " T1", v.bytes("T1"), load.t1);
            assertArrayEquals(v + " K_enc", v.bytes("K_enc"), load.kEnc);
            assertArrayEquals(v + " K_mac", v.bytes("K_mac"), load.kMac);
            if (v.diversify()) {
                assertArrayEquals(v + " TA_unit", v.bytes("TA_unit"), load.taUnit);
            }
            assertArrayEquals(v + " header", v.bytes("header"), load.header);
            assertArrayEquals(v + " encTA", v.bytes("encTA"), load.encTa);
            assertArrayEquals(v + " SAS", v.bytes("SAS"), load.sas);
            assertArrayEquals(v + " CAS", v.bytes("CAS"), load.cas);
        }
    }

    @Test
    public void asExportsExactlyTheVectorResponse() throws IOException {
        for (Vectors.Vector v : Vectors.all()) {
            Card as = Setup.operationalAs(v.bytes("T"), v.number("REF1"), v.number("usage"), v.number("version"),
                    v.diversify(), 0xFFFF, v.bytes("TA"));
            Card.Response response = as.send(v.bytes("EXPORT_KEY_to_AS"));
            assertEquals(v + " response", Hex.encode(v.bytes("AS_response")),
                    Hex.encode(RefCrypto.concat(response.data, new byte[] {(byte) (response.sw >> 8), (byte) response.sw})));
        }
    }

    @Test
    public void eiAcceptsTheVectorBlockForTheVectorChallenge() throws Exception {
        for (Vectors.Vector v : Vectors.all()) {
            byte[] ta = v.diversify() ? v.bytes("TA_unit") : v.bytes("TA");
            Card ei = Setup.operationalEi(v.bytes("T"), v.bytes("SN"), v.number("REF2"), ta.length, v.number("usage"));
            // A card draws R itself; to replay the vector, the test overwrites the drawn R with the vector's.
            Setup.challenge(ei);
            Field transients = EiApplet.class.getDeclaredField("transients");
            transients.setAccessible(true);
            byte[] r = ((Transients) transients.get(ei.applet())).challenge;
            System.arraycopy(v.bytes("R"), 0, r, 0, 16);

            Card.Response response = ei.send(v.bytes("IMPORT_KEY_to_EI"));
            assertEquals(v + " import", 0x9000, response.sw);
            byte[] entry = ei.listKeys();
            assertArrayEquals(v + " slot KCV", RefCrypto.kcv(ta), java.util.Arrays.copyOfRange(entry, 7, 10));
        }
    }

    private static RefCrypto.Load load(Vectors.Vector v) {
        return new RefCrypto.Load(v.bytes("T"), v.bytes("TA"), v.bytes("SN"), v.bytes("R"), v.number("REF1"),
                v.number("REF2"), v.number("usage"), v.number("version"), v.diversify());
    }
}
