package keyload.rewrite;

import java.io.IOException;
import java.io.InputStream;
import javacard.framework.Applet;

/**
 * What the test harness's class loaders share: the applet classes (package {@code keyload.applet}, from the
 * class files the build made for the converter) are defined here from rewritten bytes, everything else (the
 * Java Card API of jCardSim, the harness's hooks) comes from the parent loader, so the test and the rewritten
 * applets share one copy of each hook. The rewriting happens in the tests, so the applets carry no test code.
 * Subclasses say what bytes an applet class gets ({@link #appletBytes}).
 */
public abstract class AppletClassLoader extends ClassLoader {

    /** The prefix of the applet classes' names; the classes under it are the ones rewritten. */
    protected static final String APPLET_PACKAGE = "keyload.applet.";

    /** A loader whose parent is the loader of {@code owner}, the subclass. */
    protected AppletClassLoader(Class<?> owner) {
        super(owner.getClassLoader());
    }

    /** The rewritten applet class of that name, e.g. {@code keyload.applet.EiApplet}. */
    public final Class<? extends Applet> applet(String name) {
        try {
            return loadClass(name).asSubclass(Applet.class);
        } catch (ClassNotFoundException e) {
            throw new IllegalStateException(name, e);
        }
    }

    /** The rewritten class file of the applet class of that name. */
    protected abstract byte[] appletBytes(String name) throws ClassNotFoundException;

    @Override
    protected final Class<?> loadClass(String name, boolean resolve) throws ClassNotFoundException {
        if (!name.startsWith(APPLET_PACKAGE)) {
            return super.loadClass(name, resolve);
        }
        synchronized (getClassLoadingLock(name)) {
            Class<?> loaded = findLoadedClass(name);
            if (loaded == null) {
                byte[] bytes = appletBytes(name);
                loaded = defineClass(name, bytes, 0, bytes.length);
            }
            if (resolve) {
                resolveClass(loaded);
            }
            return loaded;
        }
    }

    /** The class file of that name as the build made it, from the parent loader. */
    protected final byte[] classBytes(String name) throws ClassNotFoundException {
        try (InputStream in = getParent().getResourceAsStream(name.replace('.', '/') + ".class")) {
            if (in == null) {
                throw new ClassNotFoundException(name + " is not on the test classpath");
            }
            return in.readAllBytes();
        } catch (IOException e) {
            throw new ClassNotFoundException(name, e);
        }
    }
}
